package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/time/rate"

	"github.com/harvesthub/hub/examples/internal/platform"
)

// Flags are the credential flags every service with an authenticated
// endpoint shares: ingest (POST /v1/records), index (GET /v1/search) and
// dispatch (GET /v1/jobs/{id}). Register them, parse, then call Config.
type Flags struct {
	KeysFile        string
	ClientCertsFile string
	DevKey          bool
	JWKSURL         string
	Issuer          string
	Audience        string
	RateLimit       float64
	Burst           int
}

// Register defines the flags on fs, with the environment as defaults.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.KeysFile, "keys", platform.Env("HUB_API_KEYS_FILE", ""), "API keys file: JSON array or lines of {id, hash, scopes, expires, tenant} (env HUB_API_KEYS_FILE)")
	fs.StringVar(&f.ClientCertsFile, "client-certs", platform.Env("HUB_CLIENT_CERTS_FILE", ""), `client certificate grants, JSON {"<subject CN>": {"scopes": ["records:write"], "tenant": "acme"}}; needs -tls-client-ca (env HUB_CLIENT_CERTS_FILE)`)
	fs.BoolVar(&f.DevKey, "dev-key", false, "generate an API key valid 24h (scopes records:write and records:read, tenant dev) and print it on stdout (local use only)")
	fs.StringVar(&f.JWKSURL, "jwks-url", platform.Env("HUB_JWKS_URL", ""), "https JWKS URL of the OAuth 2.0 issuer whose bearer JWTs are accepted (env HUB_JWKS_URL)")
	fs.StringVar(&f.Issuer, "jwt-issuer", platform.Env("HUB_JWT_ISSUER", ""), "required JWT iss (env HUB_JWT_ISSUER)")
	fs.StringVar(&f.Audience, "jwt-audience", platform.Env("HUB_JWT_AUDIENCE", ""), "required JWT aud (env HUB_JWT_AUDIENCE)")
	fs.Float64Var(&f.RateLimit, "rate-limit", float64(platform.EnvInt("HUB_RATE_LIMIT", 50)), "requests per second per credential (env HUB_RATE_LIMIT)")
	fs.IntVar(&f.Burst, "burst", platform.EnvInt("HUB_BURST", 100), "request burst per credential (env HUB_BURST)")
}

// Config loads the key and certificate files and returns the credential
// part of a Config. With DevKey it adds a fresh development key, prints it
// on stdout (when not nil) and returns it as devKey. tlsClientCA is the platform's -tls-client-ca: client
// certificates are credentials only over verified HTTPS.
func (f *Flags) Config(tlsClientCA string, stdout io.Writer) (cfg Config, devKey string, err error) {
	cfg = Config{
		JWKSURL:   f.JWKSURL,
		JWT:       JWTConfig{Issuer: f.Issuer, Audience: f.Audience},
		RateLimit: rate.Limit(f.RateLimit),
		Burst:     f.Burst,
	}
	keys := NewKeyStore()
	if f.KeysFile != "" {
		file, err := os.Open(f.KeysFile)
		if err != nil {
			return cfg, "", fmt.Errorf("-keys: %w", err)
		}
		keys, err = LoadKeyStore(file)
		_ = file.Close()
		if err != nil {
			return cfg, "", fmt.Errorf("-keys %s: %w", f.KeysFile, err)
		}
	}
	if f.DevKey {
		devKey, err = keys.Generate("dev", []string{ScopeWrite, ScopeRead}, 24*time.Hour, "dev")
		if err != nil {
			return cfg, "", fmt.Errorf("generating the dev key: %w", err)
		}
		if stdout != nil {
			fmt.Fprintf(stdout, "dev API key (24h, tenant dev): %s\n", devKey)
		}
	}
	cfg.Keys = keys // empty without -keys or -dev-key: every key is refused
	if f.ClientCertsFile != "" {
		if tlsClientCA == "" {
			return cfg, "", errors.New("-client-certs needs -tls-client-ca (and -tls-cert, -tls-key): certificates are verified over HTTPS")
		}
		grants, err := loadGrants(f.ClientCertsFile)
		if err != nil {
			return cfg, "", err
		}
		cfg.ClientCerts = grants
	}
	return cfg, devKey, nil
}

func loadGrants(path string) (map[string]Grant, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-client-certs: %w", err)
	}
	var file map[string]struct {
		Scopes []string `json:"scopes"`
		Tenant string   `json:"tenant"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("-client-certs %s: %w", path, err)
	}
	grants := make(map[string]Grant, len(file))
	for cn, g := range file {
		grants[cn] = Grant{Scopes: g.Scopes, Tenant: g.Tenant}
	}
	return grants, nil
}
