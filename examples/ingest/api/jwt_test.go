package api_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/hubtest"
)

const (
	issuer   = "https://idp.example.org/"
	audience = "https://ingest.example.org"
)

// rsaKeys are generated once: 2048-bit generation is slow under -race.
var rsaKeys = sync.OnceValue(func() [3]*rsa.PrivateKey {
	var ks [3]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

// jwks serves a JWK Set and counts its fetches.
type jwks struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	status  int
	fetches atomic.Int32
	version int // incremented by set
	// fetched receives the version each fetch served, when there is room.
	fetched chan int
}

func newJWKS(t *testing.T, keys map[string]*rsa.PublicKey) *jwks {
	t.Helper()
	j := &jwks{keys: keys, status: http.StatusOK, fetched: make(chan int, 1)}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		version := j.version
		defer func() {
			j.mu.Unlock()
			select {
			case j.fetched <- version:
			default:
			}
		}()
		if j.status != http.StatusOK {
			w.WriteHeader(j.status)
			return
		}
		type jwk struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
		}
		var set struct {
			Keys []jwk `json:"keys"`
		}
		for kid, k := range j.keys {
			set.Keys = append(set.Keys, jwk{
				Kty: "RSA", Kid: kid, Alg: "RS256", Use: "sig",
				N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
				E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
			})
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwks) set(keys map[string]*rsa.PublicKey) {
	j.mu.Lock()
	j.keys = keys
	j.version++
	j.mu.Unlock()
}

func (j *jwks) setStatus(status int) {
	j.mu.Lock()
	j.status = status
	j.mu.Unlock()
}

func token(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// jwtEnv is an env whose server accepts JWTs from j.
func jwtEnv(t *testing.T, j *jwks, opts ...func(*api.Config)) *env {
	t.Helper()
	return newEnv(t, append([]func(*api.Config){func(c *api.Config) {
		c.JWKSURL = j.srv.URL
		c.JWT = api.JWTConfig{Issuer: issuer, Audience: audience, RefreshUnknownKID: time.Minute}
	}}, opts...)...)
}

func TestJWT(t *testing.T) {
	keys := rsaKeys()
	now := newClock().Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": issuer, "aud": []string{audience, "other"}, "sub": "client-42",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"scope": "records:read records:write", "tenant": "initech",
		}
	}
	with := func(f func(c jwt.MapClaims)) jwt.MapClaims { c := base(); f(c); return c }
	tests := []struct {
		name       string
		raw        func(t *testing.T) string
		status     int
		challenge  string
		wantTenant string
	}{
		{name: "valid, scope string", raw: func(t *testing.T) string { return token(t, keys[0], "k1", base()) }, status: 202, wantTenant: "initech"},
		{name: "valid, scp array, no tenant", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { delete(c, "scope"); delete(c, "tenant"); c["scp"] = []string{"records:write"} }))
		}, status: 202, wantTenant: "jwt:client-42"}, // no tenant claim: the subject is a tenant of its own
		{name: "valid, scp string, single audience", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = "records:write"; c["aud"] = audience }))
		}, status: 202, wantTenant: "initech"},
		{name: "expired within leeway", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }))
		}, status: 202, wantTenant: "initech"},
		{name: "expired", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))
		}, status: 401, challenge: "expired"},
		{name: "not valid yet", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }))
		}, status: 401, challenge: "not valid yet"},
		{name: "no exp", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { delete(c, "exp") }))
		}, status: 401},
		{name: "wrong issuer", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" }))
		}, status: 401, challenge: "issuer"},
		{name: "wrong audience", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["aud"] = "https://other.example" }))
		}, status: 401, challenge: "audience"},
		{name: "no sub", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { delete(c, "sub") }))
		}, status: 401},
		{name: "bad signature: signed by another key under k1", raw: func(t *testing.T) string { return token(t, keys[1], "k1", base()) }, status: 401, challenge: "signature"},
		{name: "tampered payload", raw: func(t *testing.T) string {
			good := token(t, keys[0], "k1", base())
			evil := token(t, keys[1], "k1", with(func(c jwt.MapClaims) { c["sub"] = "admin" }))
			return good[:indexDot(good)] + evil[indexDot(evil):lastDot(evil)] + good[lastDot(good):]
		}, status: 401, challenge: "signature"},
		{name: "HS256 signed with the public modulus", raw: func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, base())
			tok.Header["kid"] = "k1"
			s, err := tok.SignedString(keys[0].N.Bytes())
			require.NoError(t, err)
			return s
		}, status: 401},
		{name: "alg none", raw: func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, base())
			tok.Header["kid"] = "k1"
			s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			require.NoError(t, err)
			return s
		}, status: 401},
		{name: "not a JWT", raw: func(*testing.T) string { return "abc" }, status: 401},
		{name: "missing scope", raw: func(t *testing.T) string {
			return token(t, keys[0], "k1", with(func(c jwt.MapClaims) { c["scope"] = "records:read" }))
		}, status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJWKS(t, map[string]*rsa.PublicKey{"k1": &keys[0].PublicKey})
			e := jwtEnv(t, j)
			resp := e.post(t, ctJSON, validRecord, "Authorization: Bearer "+tt.raw(t))
			require.Equal(t, tt.status, resp.status, "body: %s", resp.body)
			switch tt.status {
			case http.StatusAccepted:
				resp.accepted(t)
				got := e.published(t)
				require.Len(t, got, 1)
				require.Equal(t, tt.wantTenant, got[0].Tenant)
				return
			case http.StatusUnauthorized:
				ch := resp.header.Get("WWW-Authenticate")
				require.Contains(t, ch, `ApiKey realm="harvest-hub", Bearer realm="harvest-hub", error="invalid_token"`)
				require.Contains(t, ch, tt.challenge)
			case http.StatusForbidden:
				require.Equal(t, `Bearer realm="harvest-hub", error="insufficient_scope", scope="records:write"`, resp.header.Get("WWW-Authenticate"))
			}
			resp.problem(t)
			require.Empty(t, e.published(t))
		})
	}
}

func indexDot(s string) int {
	for i := range s {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

func TestJWTCustomScope(t *testing.T) {
	keys := rsaKeys()
	j := newJWKS(t, map[string]*rsa.PublicKey{"k1": &keys[0].PublicKey})
	e := jwtEnv(t, j, func(c *api.Config) { c.JWT.RequiredScope = "ingest"; c.JWT.TenantClaim = "org" })
	now := e.clock.Now()
	claims := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "s", "exp": now.Add(time.Minute).Unix(), "scp": []string{"ingest"}, "org": "umbrella"}
	e.post(t, ctJSON, validRecord, "Authorization: Bearer "+token(t, keys[0], "k1", claims)).accepted(t)
	require.Equal(t, "umbrella", e.published(t)[0].Tenant)
}

// A token signed with a key the cached set lacks makes the server fetch
// the set again, at most once per RefreshUnknownKID; a key removed from the
// set stops working after a fetch.
func TestJWKSRotation(t *testing.T) {
	keys := rsaKeys()
	j := newJWKS(t, map[string]*rsa.PublicKey{"k1": &keys[0].PublicKey})
	e := jwtEnv(t, j)
	claims := func() jwt.MapClaims {
		now := e.clock.Now()
		return jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "s", "exp": now.Add(time.Hour).Unix(), "scope": "records:write"}
	}
	post := func(key *rsa.PrivateKey, kid string) int {
		return e.post(t, ctJSON, validRecord, "Authorization: Bearer "+token(t, key, kid, claims())).status
	}
	require.Equal(t, int32(1), j.fetches.Load(), "New fetches the set")
	require.Equal(t, 202, post(keys[0], "k1"))
	require.Equal(t, int32(1), j.fetches.Load(), "a known key needs no fetch")

	// The issuer rotates to k2 (k1 removed). Right after New, the
	// unknown-key budget is spent: refused without a fetch.
	j.set(map[string]*rsa.PublicKey{"k2": &keys[1].PublicKey})
	require.Equal(t, 401, post(keys[1], "k2"))
	require.Equal(t, int32(1), j.fetches.Load())

	e.clock.Advance(time.Minute)
	require.Equal(t, 202, post(keys[1], "k2"), "an unknown kid fetches the set again")
	require.Equal(t, int32(2), j.fetches.Load())
	require.Equal(t, 401, post(keys[0], "k1"), "a key removed from the set is no longer trusted")
	require.Equal(t, 401, post(keys[2], "k3"), "another unknown kid within a minute: no fetch")
	require.Equal(t, int32(2), j.fetches.Load())
}

// The background refresh picks up a new set; Close stops it.
func TestJWKSBackgroundRefresh(t *testing.T) {
	keys := rsaKeys()
	j := newJWKS(t, map[string]*rsa.PublicKey{"k1": &keys[0].PublicKey})
	th := hubtest.New(t)
	ks := api.NewKeyStore()
	s, err := api.New(api.Config{Hub: th.Hub, Keys: ks, JWKSURL: j.srv.URL, JWT: api.JWTConfig{
		Issuer: issuer, Audience: audience, RefreshInterval: 10 * time.Millisecond,
	}})
	require.NoError(t, err)
	j.set(map[string]*rsa.PublicKey{"k2": &keys[1].PublicKey})
	for v := range j.fetched {
		if v == 1 {
			break // a refresh served the new set
		}
	}
	// The verifier stores a set before it starts the next fetch.
	<-j.fetched
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
	n := j.fetches.Load()

	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	now := time.Now()
	claims := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "s", "exp": now.Add(time.Hour).Unix(), "scope": "records:write"}
	for _, tc := range []struct {
		key    *rsa.PrivateKey
		kid    string
		status int
	}{{keys[1], "k2", 202}, {keys[0], "k1", 401}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/records", stringsReader(validRecord))
		req.Header.Set("Content-Type", ctJSON)
		req.Header.Set("Authorization", "Bearer "+token(t, tc.key, tc.kid, claims))
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, tc.status, resp.StatusCode, tc.kid)
	}
	// After Close no more periodic fetches happen (the k1 request above may
	// have caused one unknown-kid fetch).
	require.LessOrEqual(t, j.fetches.Load(), n+1)
}

// A failed refresh keeps the keys of the last good fetch.
func TestJWKSRefreshFailureKeepsKeys(t *testing.T) {
	keys := rsaKeys()
	j := newJWKS(t, map[string]*rsa.PublicKey{"k1": &keys[0].PublicKey})
	e := jwtEnv(t, j, func(c *api.Config) { c.JWT.RefreshInterval = 5 * time.Millisecond })
	j.setStatus(http.StatusServiceUnavailable)
	<-j.fetched // perhaps the good fetch of New
	<-j.fetched // a failed refresh
	<-j.fetched // the failed refresh before it has been handled
	claims := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "s", "exp": e.clock.Now().Add(time.Hour).Unix(), "scope": "records:write"}
	e.post(t, ctJSON, validRecord, "Authorization: Bearer "+token(t, keys[0], "k1", claims)).accepted(t)
}
