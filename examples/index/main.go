// Command index consumes IndexJobs into a search index, Bleve on disk
// (-index bleve, the default) or Elasticsearch (-index elasticsearch), and
// answers GET /v1/search?q=... It serves /healthz, /readyz and /metrics too.
//
//	index -broker amqp -data /var/lib/harvest -listen :8080
//	index -broker amqp -index elasticsearch -es-url http://elasticsearch:9200
//
// Every flag also reads an environment variable; run index -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/harvesthub/hub/examples/index/indexer"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "index:", err)
		os.Exit(1)
	}
}

// options are the index service's own flags.
type options struct {
	backend     string
	data        string
	esURL       string
	esIndex     string
	esRefresh   string
	concurrency int
	maxBatch    int
	notify      bool
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.backend, "index", platform.Env("HUB_INDEX", "bleve"), "search backend: bleve or elasticsearch (env HUB_INDEX)")
	fs.StringVar(&o.data, "data", platform.Env("HUB_DATA", "data"), "Bleve data directory (env HUB_DATA)")
	fs.StringVar(&o.esURL, "es-url", platform.Env("HUB_ES_URL", "http://127.0.0.1:9200"), "Elasticsearch URLs, comma separated (env HUB_ES_URL)")
	fs.StringVar(&o.esIndex, "es-index", platform.Env("HUB_ES_INDEX", "harvest-records"), "Elasticsearch index (env HUB_ES_INDEX)")
	fs.StringVar(&o.esRefresh, "es-refresh", platform.Env("HUB_ES_REFRESH", ""), "_bulk refresh: empty, true or wait_for (env HUB_ES_REFRESH)")
	fs.IntVar(&o.concurrency, "concurrency", platform.EnvInt("HUB_CONCURRENCY", 32), "jobs handled at once, indexed in batches (env HUB_CONCURRENCY)")
	fs.IntVar(&o.maxBatch, "max-batch", platform.EnvInt("HUB_MAX_BATCH", 500), "documents per index batch (env HUB_MAX_BATCH)")
	fs.BoolVar(&o.notify, "notify-indexed", platform.Env("HUB_NOTIFY_INDEXED", "true") == "true", "publish DocIndexed for dispatch's job status (env HUB_NOTIFY_INDEXED)")
}

func openIndexer(ctx context.Context, o options) (indexer.Indexer, error) {
	switch o.backend {
	case "bleve":
		return indexer.OpenBleve(o.data)
	case "elasticsearch", "es":
		var addrs []string
		for _, a := range strings.Split(o.esURL, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		return indexer.NewElastic(ctx, indexer.ElasticConfig{
			Addresses:   addrs,
			Index:       o.esIndex,
			Username:    os.Getenv("HUB_ES_USERNAME"),
			Password:    os.Getenv("HUB_ES_PASSWORD"),
			APIKey:      os.Getenv("HUB_ES_API_KEY"),
			Refresh:     o.esRefresh,
			CreateIndex: true,
		})
	default:
		return nil, fmt.Errorf("index: -index %q; use bleve or elasticsearch", o.backend)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := platform.Defaults("index")
	fs := flag.NewFlagSet("index", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	var o options
	o.register(fs)
	var creds api.Flags
	creds.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	acfg, _, err := creds.Config(cfg.TLSClientCA, stderr)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	idx, err := openIndexer(ctx, o)
	if err != nil {
		return err
	}
	rt, err := platform.New(ctx, cfg, stderr)
	if err != nil {
		return errors.Join(err, idx.Close())
	}
	svc, err := indexer.NewService(idx, indexer.ServiceConfig{
		Concurrency: o.concurrency, MaxBatch: o.maxBatch, NotifyIndexed: o.notify, Logger: rt.Logger,
	})
	if err != nil {
		return errors.Join(err, rt.Close(), idx.Close())
	}
	rt.AddCloser(idx.Close) // runs last of the two
	rt.AddCloser(svc.Close) // after the hub drained
	rt.AddReadiness(idx.Name(), idx.Ping)
	acfg.Logger = rt.Logger
	auth, err := api.New(acfg) // no Hub: it only authenticates
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(auth.Close)
	if err := svc.Register(rt.Hub); err != nil {
		return errors.Join(err, rt.Close())
	}
	svc.Routes(rt.Mux, auth.Guard(api.ScopeRead, api.ScopeWrite))
	return rt.Run(ctx)
}
