// Command harvest runs the whole pipeline in one process: the ingest API,
// the dispatcher and the index service on the in-memory broker, with a
// Bleve index in a temporary directory (or -data). It prints where it
// listens and, with -dev-key, a ready-to-paste curl command with a fresh
// development API key.
//
//	go run ./examples/harvest -dev-key  # serve until Ctrl-C
//	go run ./examples/harvest -demo     # ingest the bundled sample, search it, exit
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/harvesthub/hub/examples/dispatch/dispatcher"
	"github.com/harvesthub/hub/examples/index/indexer"
	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/platform"
)

// sample is the demo data set: harvested records of three sources
// (gov-datasets, cyber-advisories, careers), one JSON object per line.
//
//go:embed data/sample.ndjson
var sample []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "harvest:", err)
		os.Exit(1)
	}
}

type options struct {
	demo        bool
	data        string
	queries     string
	demoTimeout time.Duration
}

// run is main without the process: it returns when ctx is done or, with
// -demo, once the sample is searchable and a search is printed.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := platform.Defaults("harvest")
	cfg.Listen = platform.Env("HUB_LISTEN", "127.0.0.1:8080")
	cfg.LogLevel = platform.Env("HUB_LOG_LEVEL", "warn") // a quickstart prints its own story
	cfg.ShutdownTimeout = 5 * time.Second
	fs := flag.NewFlagSet("harvest", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfg.RegisterFlags(fs)
	var o options
	fs.BoolVar(&o.demo, "demo", false, "ingest the bundled sample data set through the HTTP API, wait until it is searchable, print results and exit")
	fs.StringVar(&o.data, "data", "", "Bleve index directory (default: a temporary directory removed at exit)")
	fs.StringVar(&o.queries, "demo-queries", "ransomware,flood risk,engineer cheltenham", "comma-separated searches -demo prints")
	fs.DurationVar(&o.demoTimeout, "demo-timeout", time.Minute, "how long -demo waits for the sample to become searchable")
	var creds api.Flags
	creds.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
	if o.demo && !listenSet && os.Getenv("HUB_LISTEN") == "" {
		cfg.Listen = "127.0.0.1:0" // any free port: the demo must not fail on a busy 8080
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	dataDir := o.data
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "harvest-bleve-")
		if err != nil {
			return fmt.Errorf("harvest: temporary index directory: %w", err)
		}
		defer os.RemoveAll(dir)
		dataDir = dir
	}
	idx, err := indexer.OpenBleve(dataDir)
	if err != nil {
		return err
	}
	rt, err := platform.New(ctx, cfg, os.Stderr)
	if err != nil {
		return errors.Join(err, idx.Close())
	}
	rt.AddCloser(idx.Close)
	svc, err := indexer.NewService(idx, indexer.ServiceConfig{NotifyIndexed: true, Logger: rt.Logger})
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(svc.Close)
	rt.AddReadiness(idx.Name(), idx.Ping)
	d, err := dispatcher.New(dispatcher.Config{})
	if err != nil {
		return errors.Join(err, rt.Close())
	}

	acfg, devKey, err := creds.Config(cfg.TLSClientCA, nil)
	if err != nil {
		return errors.Join(fmt.Errorf("harvest: %w", err), rt.Close())
	}
	demoKey := devKey
	if o.demo {
		// The demo's own key: it lives only as long as the demo and is
		// never printed whole.
		demoKey, err = acfg.Keys.Generate("demo", []string{api.ScopeWrite, api.ScopeRead}, o.demoTimeout+time.Minute, "demo")
		if err != nil {
			return errors.Join(fmt.Errorf("harvest: demo key: %w", err), rt.Close())
		}
	}
	acfg.Hub, acfg.Logger = rt.Hub, rt.Logger
	ingest, err := api.New(acfg)
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.AddCloser(ingest.Close)
	if err := errors.Join(d.Register(rt.Hub), svc.Register(rt.Hub)); err != nil {
		return errors.Join(err, rt.Close())
	}
	rt.Mux.Handle("/v1/records", ingest.Handler())
	guard := ingest.Guard(api.ScopeRead, api.ScopeWrite)
	d.Routes(rt.Mux, guard)
	svc.Routes(rt.Mux, guard)

	addr, err := rt.Listen()
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	base := "http://" + addr.String()
	printBanner(stdout, base, devKey, demoKey, dataDir, o.data == "")

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone := make(chan error, 1)
	go func() { runDone <- rt.Run(runCtx) }()

	if !o.demo {
		return <-runDone
	}
	demoErr := demo(ctx, stdout, base, demoKey, idx, o)
	stopRun()
	return errors.Join(demoErr, <-runDone)
}

func printBanner(w io.Writer, base, devKey, demoKey, dataDir string, temp bool) {
	where := dataDir
	if temp {
		where += " (temporary)"
	}
	fmt.Fprintf(w, `Harvest Hub: ingest, dispatch and index in one process
  broker   memory (in process)
  index    Bleve in %s
  listen   %s
`, where, base)
	switch {
	case devKey != "":
		fmt.Fprintf(w, `  API key  %s   (dev key, 24h, tenant dev, scopes %s %s)

Ingest a record:
  curl -sS -X POST %s/v1/records \
    -H 'X-API-Key: %s' -H 'Content-Type: application/json' \
    -d '{"id":"ds-42","source":"gov-datasets","title":"Flood risk areas in Gloucestershire","body":"Flood risk zones for rivers and the sea","tags":["environment","flooding"]}'
Search:
  curl -sS -H 'X-API-Key: %s' '%s/v1/search?q=flood'
Job status:
  curl -sS -H 'X-API-Key: %s' %s/v1/jobs/gov-datasets:ds-42
`, devKey, api.ScopeWrite, api.ScopeRead, base, devKey, devKey, base, devKey, base)
	case demoKey != "":
		fmt.Fprintf(w, "  API key  %s…   (demo key, valid while the demo runs)\n", demoKey[:min(len(demoKey), 16)])
	default:
		fmt.Fprintf(w, "  API key  none: pass -dev-key to mint a 24h development key, or -keys with a keys file\n")
	}
	fmt.Fprintf(w, "Health and metrics: %s/readyz  %s/metrics\n\n", base, base)
}

// demo posts the sample through the HTTP API in NDJSON batches, waits until
// the index holds every record, and prints some searches.
func demo(ctx context.Context, w io.Writer, base, key string, idx indexer.Indexer, o options) error {
	ctx, cancel := context.WithTimeout(ctx, o.demoTimeout)
	defer cancel()
	lines := sampleLines()
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	const batch = 100
	for i := 0; i < len(lines); i += batch {
		end := min(i+batch, len(lines))
		body := bytes.Join(lines[i:end], []byte("\n"))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/records", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("X-API-Key", key)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("harvest-demo-%d", i/batch))
		res, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("harvest: posting the sample: %w", err)
		}
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		_ = res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("harvest: POST /v1/records answered %s: %s", res.Status, msg)
		}
	}
	fmt.Fprintf(w, "Ingested %d records through POST /v1/records (202 Accepted) in %v.\n", len(lines), time.Since(start).Round(time.Millisecond))

	if err := waitCount(ctx, idx, uint64(len(lines))); err != nil {
		return err
	}
	fmt.Fprintf(w, "All %d records are searchable after %v (ingest -> dispatch -> index).\n\n", len(lines), time.Since(start).Round(time.Millisecond))

	for _, q := range strings.Split(o.queries, ",") {
		if q = strings.TrimSpace(q); q == "" {
			continue
		}
		if err := printSearch(ctx, w, client, base, key, q); err != nil {
			return err
		}
	}
	var last struct{ ID, Source string }
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil {
		return fmt.Errorf("harvest: sample: %w", err)
	}
	return printJob(ctx, w, client, base, key, last.Source+":"+last.ID)
}

// printJob waits (bounded by ctx) until dispatch reports the job indexed,
// and prints its status.
func printJob(ctx context.Context, w io.Writer, client *http.Client, base, key, docID string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/jobs/"+url.PathEscape(docID), nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-API-Key", key)
		res, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("harvest: job status: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		_ = res.Body.Close()
		var job struct{ Status string }
		if res.StatusCode == http.StatusOK && json.Unmarshal(body, &job) == nil && job.Status == dispatcher.StatusIndexed {
			fmt.Fprintf(w, "GET /v1/jobs/%s\n  %s\n", docID, bytes.TrimSpace(body))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harvest: job %s not reported indexed (last answer %s %s): %w", docID, res.Status, body, ctx.Err())
		case <-tick.C:
		}
	}
}

func sampleLines() [][]byte {
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(sample))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, bytes.Clone(l))
		}
	}
	return lines
}

// waitCount polls the index's document count until it reaches want or ctx
// ends. Indexing is asynchronous (that is the point), so a bounded poll is
// the honest way for a client to wait.
func waitCount(ctx context.Context, idx indexer.Indexer, want uint64) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := idx.Count(ctx)
		if err == nil && n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harvest: %d of %d records searchable when waiting ended: %w", n, want, ctx.Err())
		case <-tick.C:
		}
	}
}

func printSearch(ctx context.Context, w io.Writer, client *http.Client, base, key, q string) error {
	u := base + "/v1/search?size=3&q=" + url.QueryEscape(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", key)
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("harvest: searching %q: %w", q, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("harvest: GET /v1/search?q=%s answered %s: %s", q, res.Status, msg)
	}
	var r indexer.Result
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return fmt.Errorf("harvest: decoding search results: %w", err)
	}
	fmt.Fprintf(w, "GET /v1/search?q=%s  -> %d hits\n", url.QueryEscape(q), r.Total)
	for _, h := range r.Hits {
		fmt.Fprintf(w, "  %5.2f  %-28s %s\n", h.Score, h.DocID, h.Title)
	}
	fmt.Fprintln(w)
	return nil
}
