// Command dispatch consumes RecordIngested messages, normalises them and
// publishes IndexJobs for the index workers. It serves GET /v1/jobs/{id},
// /healthz, /readyz and /metrics.
//
//	dispatch -broker amqp -amqp-url amqp://guest:guest@rabbitmq:5672/ -listen :8080
//
// Every flag also reads an environment variable; run dispatch -h.
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

	"github.com/harvesthub/hub/examples/dispatch/dispatcher"
	"github.com/harvesthub/hub/examples/internal/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := platform.Defaults("dispatch")
	fs := flag.NewFlagSet("dispatch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	concurrency := fs.Int("concurrency", platform.EnvInt("HUB_CONCURRENCY", 8), "records normalised at once (env HUB_CONCURRENCY)")
	maxJobs := fs.Int("max-jobs", platform.EnvInt("HUB_MAX_JOBS", dispatcher.JobsDefault), "job statuses kept in memory (env HUB_MAX_JOBS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := dispatcher.New(dispatcher.Config{Concurrency: *concurrency, MaxJobs: *maxJobs})
	if err != nil {
		return err
	}
	rt, err := platform.New(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if err := d.Register(rt.Hub); err != nil {
		return errors.Join(err, rt.Close())
	}
	d.Routes(rt.Mux)
	return rt.Run(ctx)
}
