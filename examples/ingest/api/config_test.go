package api_test

import (
	"crypto/rsa"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/hubtest"
)

func TestNewRejectsConfig(t *testing.T) {
	th := hubtest.New(t)
	keys := api.NewKeyStore()
	jwtOK := api.JWTConfig{Issuer: issuer, Audience: audience}
	tests := []struct {
		name    string
		cfg     api.Config
		wantErr string
	}{
		{"no credentials", api.Config{Hub: th.Hub}, "no credentials are enabled"},
		{"negative rate", api.Config{Hub: th.Hub, Keys: keys, RateLimit: -1}, "RateLimit is -1"},
		{"negative burst", api.Config{Hub: th.Hub, Keys: keys, Burst: -1}, "Burst is -1"},
		{"negative body limit", api.Config{Hub: th.Hub, Keys: keys, MaxBodyBytes: -1}, "MaxBodyBytes"},
		{"negative batch", api.Config{Hub: th.Hub, Keys: keys, MaxBatch: -5}, "MaxBatch"},
		{"negative limiter bound", api.Config{Hub: th.Hub, Keys: keys, RateLimitKeys: -5}, "RateLimitKeys"},
		{"empty certificate name", api.Config{Hub: th.Hub, ClientCerts: map[string]api.Grant{"": {}}}, "empty common name"},
		{"relative JWKS URL", api.Config{Hub: th.Hub, JWKSURL: "/jwks.json", JWT: jwtOK}, "not an absolute https URL"},
		{"plain http JWKS URL", api.Config{Hub: th.Hub, JWKSURL: "http://idp.example/jwks", JWT: jwtOK}, "plain http"},
		{"no issuer", api.Config{Hub: th.Hub, JWKSURL: "https://idp.example/jwks", JWT: api.JWTConfig{Audience: audience}}, "JWT.Issuer is empty"},
		{"no audience", api.Config{Hub: th.Hub, JWKSURL: "https://idp.example/jwks", JWT: api.JWTConfig{Issuer: issuer}}, "JWT.Audience is empty"},
		{"HMAC algorithm", api.Config{Hub: th.Hub, JWKSURL: "https://idp.example/jwks", JWT: api.JWTConfig{Issuer: issuer, Audience: audience, Algorithms: []string{"HS256"}}}, `"HS256"`},
		{"negative leeway", api.Config{Hub: th.Hub, JWKSURL: "https://idp.example/jwks", JWT: api.JWTConfig{Issuer: issuer, Audience: audience, Leeway: -time.Second}}, "Leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := api.New(tt.cfg)
			require.Nil(t, s)
			require.ErrorIs(t, err, api.ErrInvalidConfig)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestNewJWKSUnavailable(t *testing.T) {
	th := hubtest.New(t)
	j := newJWKS(t, map[string]*rsa.PublicKey{})
	j.setStatus(http.StatusInternalServerError)
	_, err := api.New(api.Config{Hub: th.Hub, JWKSURL: j.srv.URL, JWT: api.JWTConfig{Issuer: issuer, Audience: audience}})
	require.ErrorIs(t, err, api.ErrJWKS)
	require.ErrorContains(t, err, "500")

	url := j.srv.URL
	j.srv.Close()
	_, err = api.New(api.Config{Hub: th.Hub, JWKSURL: url, JWT: api.JWTConfig{Issuer: issuer, Audience: audience}})
	require.ErrorIs(t, err, api.ErrJWKS)
	require.False(t, errors.Is(err, api.ErrInvalidConfig))
}

// Unlimited rate with no burst is valid.
func TestNewRateInf(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.RateLimit = rate.Inf })
	for range 5 {
		e.post(t, ctJSON, validRecord, "X-API-Key: "+e.devKey).accepted(t)
	}
}
