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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

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
	var creds api.Flags
	creds.Register(fs)
	maxBody := fs.Int64("max-body-bytes", int64(platform.EnvInt("HUB_MAX_BODY_BYTES", 1<<20)), "request body limit (env HUB_MAX_BODY_BYTES)")
	maxBatch := fs.Int("max-batch", platform.EnvInt("HUB_MAX_BATCH", 1000), "records per NDJSON request (env HUB_MAX_BATCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	acfg, _, err := creds.Config(cfg.TLSClientCA, stdout)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	rt, err := platform.New(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	acfg.Hub, acfg.Logger = rt.Hub, rt.Logger
	acfg.MaxBodyBytes, acfg.MaxBatch = *maxBody, *maxBatch
	srv, err := api.New(acfg)
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(srv.Close)
	rt.Mux.Handle("/v1/records", srv.Handler())
	return rt.Run(ctx)
}

// loadGrants reads the -client-certs file.
