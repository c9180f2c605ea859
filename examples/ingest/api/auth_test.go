package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/ingest/api"
)

const (
	validRecord = `{"id":"r1","source":"web","title":"T"}`
	secret      = "0123456789abcdef0123456789abcdef" // 32 characters
)

func TestAPIKeys(t *testing.T) {
	tests := []struct {
		name    string
		headers func(e *env) []string
		advance time.Duration
		status  int
		detail  string // a part of the problem's detail
		tenant  string
	}{
		{name: "Authorization: ApiKey", headers: func(e *env) []string { return []string{"Authorization: ApiKey " + e.devKey} }, status: 202, tenant: "acme"},
		{name: "scheme is case-insensitive", headers: func(e *env) []string { return []string{"Authorization: apikey " + e.devKey} }, status: 202, tenant: "acme"},
		{name: "X-API-Key", headers: func(e *env) []string { return []string{"X-API-Key: " + e.devKey} }, status: 202, tenant: "acme"},
		{name: "added key before expiry", headers: func(*env) []string { return []string{"X-API-Key: " + api.FormatKey("partner", secret)} }, advance: 59 * time.Minute, status: 202, tenant: "globex"},
		{name: "expired key", headers: func(*env) []string { return []string{"X-API-Key: " + api.FormatKey("partner", secret)} }, advance: time.Hour, status: 401, detail: "expired"},
		{name: "wrong secret", headers: func(*env) []string { return []string{"X-API-Key: " + api.FormatKey("dev", secret)} }, status: 401, detail: "not valid"},
		{name: "unknown ID", headers: func(*env) []string { return []string{"X-API-Key: " + api.FormatKey("nobody", secret)} }, status: 401, detail: "not valid"},
		{name: "not a key", headers: func(*env) []string { return []string{"X-API-Key: letmein"} }, status: 401, detail: "not valid"},
		{name: "key with the secret cut short", headers: func(e *env) []string { return []string{"X-API-Key: " + e.devKey[:len(e.devKey)-1]} }, status: 401},
		{name: "empty ApiKey", headers: func(*env) []string { return []string{"Authorization: ApiKey"} }, status: 401, detail: "missing"},
		{name: "key without records:write", headers: func(*env) []string { return []string{"X-API-Key: " + api.FormatKey("reader", secret)} }, status: 403, detail: "records:write"},
		{name: "Basic scheme", headers: func(*env) []string { return []string{"Authorization: Basic ZGV2OnNlY3JldA=="} }, status: 401, detail: "Basic"},
		{name: "Bearer when JWTs are disabled", headers: func(*env) []string { return []string{"Authorization: Bearer x.y.z"} }, status: 401, detail: "bearer tokens are not accepted"},
		{name: "both Authorization and X-API-Key", headers: func(e *env) []string {
			return []string{"Authorization: ApiKey " + e.devKey, "X-API-Key: " + e.devKey}
		}, status: 400, detail: "one credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			require.NoError(t, e.keys.Add("partner", secret, []string{"records:read", api.ScopeWrite}, e.clock.Now().Add(time.Hour), "globex"))
			require.NoError(t, e.keys.Add("reader", secret, []string{"records:read"}, time.Time{}, "acme"))
			e.clock.Advance(tt.advance)
			resp := e.post(t, ctJSON, validRecord, tt.headers(e)...)
			require.Equal(t, tt.status, resp.status, "body: %s", resp.body)
			if tt.status == http.StatusAccepted {
				resp.accepted(t)
				got := e.published(t)
				require.Len(t, got, 1)
				require.Equal(t, tt.tenant, got[0].Tenant)
				return
			}
			p := resp.problem(t)
			require.Contains(t, p.Detail, tt.detail)
			if tt.status == http.StatusUnauthorized {
				require.Equal(t, `ApiKey realm="harvest-hub"`, resp.header.Get("WWW-Authenticate"))
			}
			require.Empty(t, e.published(t))
		})
	}
}

func TestKeyStoreAdd(t *testing.T) {
	tests := []struct {
		name, id, secret string
		wantErr          string
	}{
		{"ok", "partner-1.eu", secret, ""},
		{"short secret", "p", "short", "at least 32"},
		{"secret with a space", "p", secret + " x", "white space"},
		{"empty ID", "", secret, "1 to 64"},
		{"underscore in ID", "a_b", secret, "no '_'"},
		{"duplicate", "dup", secret, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := api.NewKeyStore()
			require.NoError(t, ks.Add("dup", secret, nil, time.Time{}, ""))
			err := ks.Add(tt.id, tt.secret, nil, time.Time{}, "")
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestKeyStoreGenerate(t *testing.T) {
	ks := api.NewKeyStore()
	k1, err := ks.Generate("dev", []string{api.ScopeWrite}, time.Hour, "")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(k1, "hh_dev_"), k1)
	require.GreaterOrEqual(t, len(strings.TrimPrefix(k1, "hh_dev_")), api.MinSecretLength)
	_, err = ks.Generate("dev", nil, 0, "")
	require.ErrorContains(t, err, "already exists")
	_, err = ks.Generate("neg", nil, -time.Second, "")
	require.ErrorContains(t, err, "ttl")
	k2, err := ks.Generate("dev2", nil, 0, "")
	require.NoError(t, err)
	require.NotEqual(t, strings.TrimPrefix(k1, "hh_dev_"), strings.TrimPrefix(k2, "hh_dev2_"))
}

// A key removed from the store is refused at once.
func TestKeyStoreRemove(t *testing.T) {
	e := newEnv(t)
	e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).accepted(t)
	require.True(t, e.keys.Remove("dev"))
	require.False(t, e.keys.Remove("dev"))
	resp := e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey)
	require.Equal(t, http.StatusUnauthorized, resp.status)
	require.Len(t, e.published(t), 1)
}

func TestLoadKeyStore(t *testing.T) {
	key := api.FormatKey("prod", secret)
	hash := api.HashKey(key)
	require.Equal(t, "sha256:", hash[:7])
	require.Len(t, hash, 7+64)
	tests := []struct {
		name, input string
		wantErr     string
		status      int
	}{
		{name: "array", input: `[{"id":"prod","hash":"` + hash + `","scopes":["records:write"],"tenant":"acme"}]`, status: 202},
		{name: "JSON lines", input: "{\"id\":\"other\",\"hash\":\"" + api.HashKey("hh_other_x") + "\",\"scopes\":[]}\n{\"id\":\"prod\",\"hash\":\"" + hash + "\",\"scopes\":[\"records:write\"],\"expires\":\"2030-01-01T00:00:00Z\"}\n", status: 202},
		{name: "expired", input: `{"id":"prod","hash":"` + hash + `","scopes":["records:write"],"expires":"2026-01-01T00:00:00Z"}`, status: 401},
		{name: "without scope", input: `{"id":"prod","hash":"` + hash + `"}`, status: 403},
		{name: "empty", input: " \n", status: 401},
		{name: "unknown field", input: `[{"id":"prod","hash":"` + hash + `","expiry":"2030-01-01T00:00:00Z"}]`, wantErr: `unknown field "expiry"`},
		{name: "bare hex hash", input: `{"id":"prod","hash":"` + hash[7:] + `"}`, wantErr: `"sha256:" and 64 hex digits`},
		{name: "short hash", input: `{"id":"prod","hash":"sha256:abcd"}`, wantErr: `"sha256:" and 64 hex digits`},
		{name: "bad ID", input: `{"id":"a_b","hash":"` + hash + `"}`, wantErr: "entry 1"},
		{name: "duplicate", input: `{"id":"prod","hash":"` + hash + `"}{"id":"prod","hash":"` + hash + `"}`, wantErr: "entry 2"},
		{name: "not JSON", input: `id=prod`, wantErr: "entry 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := api.LoadKeyStore(strings.NewReader(tt.input))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			e := newEnv(t, func(c *api.Config) { c.Keys = ks })
			resp := e.post(t, ctJSON, validRecord, "X-API-Key: "+key)
			require.Equal(t, tt.status, resp.status, "body: %s", resp.body)
		})
	}
}
