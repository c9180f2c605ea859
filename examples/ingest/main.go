// Command ingest is the HTTP front door of the pipeline: POST /v1/records
// (see package api) publishes each accepted record as a RecordIngested. It
// serves /healthz, /readyz and /metrics too.
//
//	ingest -broker amqp -keys /etc/harvest/keys.json -listen :8080
//	ingest -jwks-url https://idp.example/.well-known/jwks.json -jwt-issuer https://idp.example/ -jwt-audience harvest
//	ingest -dev-key        # prints a fresh API key for local use
//
// Every flag also reads an environment variable; run ingest -h.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := platform.Defaults("ingest")
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	keysFile := fs.String("keys", platform.Env("HUB_API_KEYS_FILE", ""), "API keys file: JSON array or lines of {id, hash, scopes, expires, tenant} (env HUB_API_KEYS_FILE)")
	certsFile := fs.String("client-certs", platform.Env("HUB_CLIENT_CERTS_FILE", ""), `client certificate grants, JSON {"<subject CN>": {"scopes": ["records:write"], "tenant": "acme"}}; needs -tls-client-ca (env HUB_CLIENT_CERTS_FILE)`)
	devKey := fs.Bool("dev-key", false, "generate an API key valid 24h and print it on stdout (local use only)")
	jwksURL := fs.String("jwks-url", platform.Env("HUB_JWKS_URL", ""), "JWKS of the OAuth 2.0 issuer whose bearer JWTs are accepted (env HUB_JWKS_URL)")
	issuer := fs.String("jwt-issuer", platform.Env("HUB_JWT_ISSUER", ""), "required JWT iss (env HUB_JWT_ISSUER)")
	audience := fs.String("jwt-audience", platform.Env("HUB_JWT_AUDIENCE", ""), "required JWT aud (env HUB_JWT_AUDIENCE)")
	rateLimit := fs.Float64("rate-limit", float64(platform.EnvInt("HUB_RATE_LIMIT", 50)), "requests per second per credential (env HUB_RATE_LIMIT)")
	burst := fs.Int("burst", platform.EnvInt("HUB_BURST", 100), "request burst per credential (env HUB_BURST)")
	maxBody := fs.Int64("max-body-bytes", int64(platform.EnvInt("HUB_MAX_BODY_BYTES", 1<<20)), "request body limit (env HUB_MAX_BODY_BYTES)")
	maxBatch := fs.Int("max-batch", platform.EnvInt("HUB_MAX_BATCH", 1000), "records per NDJSON request (env HUB_MAX_BATCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	var err error
	keys := api.NewKeyStore()
	if *keysFile != "" {
		f, err := os.Open(*keysFile)
		if err != nil {
			return fmt.Errorf("ingest: -keys: %w", err)
		}
		keys, err = api.LoadKeyStore(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("ingest: -keys %s: %w", *keysFile, err)
		}
	}
	var grants map[string]api.Grant
	if *certsFile != "" {
		if cfg.TLSClientCA == "" {
			return errors.New("ingest: -client-certs needs -tls-client-ca (and -tls-cert, -tls-key): certificates are verified over HTTPS")
		}
		if grants, err = loadGrants(*certsFile); err != nil {
			return err
		}
	}
	if *devKey {
		key, err := keys.Generate("dev", []string{api.ScopeWrite}, 24*time.Hour, "dev")
		if err != nil {
			return fmt.Errorf("ingest: generating the dev key: %w", err)
		}
		fmt.Fprintf(stdout, "dev API key (24h): %s\n", key)
	}

	rt, err := platform.New(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		Hub:          rt.Hub,
		Keys:         keys,
		JWKSURL:      *jwksURL,
		JWT:          api.JWTConfig{Issuer: *issuer, Audience: *audience},
		ClientCerts:  grants,
		RateLimit:    rate.Limit(*rateLimit),
		Burst:        *burst,
		MaxBodyBytes: *maxBody,
		MaxBatch:     *maxBatch,
		Logger:       rt.Logger,
	})
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(srv.Close)
	rt.Mux.Handle("/v1/records", srv.Handler())
	return rt.Run(ctx)
}

// loadGrants reads the -client-certs file.
func loadGrants(path string) (map[string]api.Grant, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: -client-certs: %w", err)
	}
	var file map[string]struct {
		Scopes []string `json:"scopes"`
		Tenant string   `json:"tenant"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("ingest: -client-certs %s: %w", path, err)
	}
	grants := make(map[string]api.Grant, len(file))
	for cn, g := range file {
		grants[cn] = api.Grant{Scopes: g.Scopes, Tenant: g.Tenant}
	}
	return grants, nil
}
