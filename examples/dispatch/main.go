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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/harvesthub/hub/examples/dispatch/dispatcher"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/platform"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/jobs/pgjobs"
	"github.com/harvesthub/hub/outbox"
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
	jobStore := fs.String("jobs-store", envOr("HUB_JOBS_STORE", "memory"), "job status: memory (this replica) or postgres (every replica; needs -store postgres) (env HUB_JOBS_STORE)")
	jobsTable := fs.String("jobs-table", envOr("HUB_JOBS_TABLE", pgjobs.TableDefault), "PostgreSQL job table (env HUB_JOBS_TABLE)")
	outboxTable := fs.String("outbox-table", envOr("HUB_OUTBOX_TABLE", outbox.TableDefault), "PostgreSQL outbox table (env HUB_OUTBOX_TABLE)")
	var creds api.Flags
	creds.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *jobStore != "memory" && *jobStore != "postgres":
		return fmt.Errorf("-jobs-store %q; use memory or postgres", *jobStore)
	case *jobStore == "postgres" && cfg.Store != platform.StorePostgres:
		return fmt.Errorf("-jobs-store postgres needs -store postgres: the dispatch transaction completes its idempotency key there")
	}
	acfg, _, err := creds.Config(cfg.TLSClientCA, stderr)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	rt, err := platform.New(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	dcfg := dispatcher.Config{Concurrency: *concurrency, MaxJobs: *maxJobs}
	if *jobStore == "postgres" {
		if dcfg.Durable, err = durable(ctx, rt, cfg.PostgresDSN, *jobsTable, *outboxTable); err != nil {
			return errors.Join(err, rt.Close())
		}
	}
	d, err := dispatcher.New(dcfg)
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	acfg.Logger = rt.Logger
	auth, err := api.New(acfg) // no Hub: it only authenticates
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(auth.Close)
	if err := d.Register(rt.Hub); err != nil {
		return errors.Join(err, rt.Close())
	}
	d.Routes(rt.Mux, auth.Guard(api.ScopeRead, api.ScopeWrite))
	return rt.Run(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// durable opens the PostgreSQL job store, outbox and inbox, migrates them,
// and starts the outbox relay; the runtime stops the relay after the hub
// drained and before the broker closes.
func durable(ctx context.Context, rt *platform.Runtime, dsn, jobsTable, outboxTable string) (*dispatcher.Durable, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	d := &dispatcher.Durable{Pool: pool}
	fail := func(err error) (*dispatcher.Durable, error) {
		if d.Outbox != nil {
			_ = d.Outbox.Close()
		}
		if d.Inbox != nil {
			_ = d.Inbox.Close()
		}
		pool.Close()
		return nil, err
	}
	// The platform's idempotency store uses pgstore's default table; this
	// one completes keys there inside the dispatch transaction.
	if d.Inbox, err = pgstore.New(pool, pgstore.Config{CleanupInterval: -1}); err != nil {
		return fail(err)
	}
	if d.Jobs, err = pgjobs.New(pool, pgjobs.Config{Table: jobsTable}); err != nil {
		return fail(err)
	}
	if d.Outbox, err = outbox.New(pool, rt.Hub, outbox.Config{Table: outboxTable}); err != nil {
		return fail(err)
	}
	if err := d.Jobs.Migrate(ctx); err != nil {
		return fail(err)
	}
	if err := d.Outbox.Migrate(ctx); err != nil {
		return fail(err)
	}
	relayCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Outbox.Run(relayCtx) }()
	rt.AddReadiness("outbox", d.Outbox.Health)
	rt.AddReadiness("jobs", d.Jobs.Ping)
	rt.AddCloser(func() error {
		stop()
		err := <-done
		_ = d.Outbox.Close()
		_ = d.Inbox.Close()
		_ = d.Jobs.Close()
		pool.Close()
		return err
	})
	return d, nil
}
