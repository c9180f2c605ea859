package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/harvesthub/hub/broker"
)

// serveFlags are the flags of hubctl serve beyond the connection flags.
type serveFlags struct {
	listen     string
	token      string
	tokenFile  string
	readOnly   bool
	topics     specList
	metrics    stringList
	sample     time.Duration
	history    int
	consoleTLS broker.TLSFiles
	keys       keyFlags
}

// serveEnvFlags are the serve flags HUBCTL_ variables set, besides
// connFlags.
var serveEnvFlags = []string{"listen", "token", "token-file", "read-only", "topic", "metrics", "sample", "console-tls-ca", "console-tls-cert", "console-tls-key"}

// Defaults of hubctl serve.
const (
	serveListenDefault  = "127.0.0.1:8080"
	serveSampleDefault  = 15 * time.Second
	serveHistoryDefault = 240 // one hour at 15s
)

func (c *cli) serve(args []string) error {
	var cn conn
	var sf serveFlags
	fs := c.flagSet("serve", "serve [--listen addr] [--token t | --token-file f] [--topic t[:group,...]]... [--metrics url]... [--read-only]", &cn)
	fs.StringVar(&sf.listen, "listen", serveListenDefault, "address to serve the console on; anything but loopback needs --token or --console-tls-*")
	fs.StringVar(&sf.token, "token", "", "operator token asked for at login (prefer HUBCTL_TOKEN or --token-file: flags show in ps)")
	fs.StringVar(&sf.tokenFile, "token-file", "", "file holding the operator token")
	fs.BoolVar(&sf.readOnly, "read-only", false, "show everything, change nothing: no replay, no purge")
	fs.Var(&sf.topics, "topic", "a topic to show, with its consumer groups after a colon (records:normalise,audit); repeatable (HUBCTL_TOPIC: one topic). Needed on RabbitMQ, which cannot list queues")
	fs.Var(&sf.metrics, "metrics", "a worker's Prometheus /metrics URL for the handlers page; repeatable or comma-separated")
	fs.DurationVar(&sf.sample, "sample", serveSampleDefault, "how often queue depths (and /metrics) are sampled")
	fs.IntVar(&sf.history, "history", serveHistoryDefault, "samples kept per queue for the sparklines")
	fs.StringVar(&sf.consoleTLS.CA, "console-tls-ca", "", "serve HTTPS and require client certificates signed by these CAs (PEM)")
	fs.StringVar(&sf.consoleTLS.Cert, "console-tls-cert", "", "the console's HTTPS certificate (PEM)")
	fs.StringVar(&sf.consoleTLS.Key, "console-tls-key", "", "the console's HTTPS key (PEM)")
	sf.keys.register(fs)
	if err := c.applyEnv(fs, serveEnvFlags); err != nil {
		return err
	}
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("serve: unexpected argument %q; name topics with --topic", pos[0])
	}
	cfg, err := sf.config(cn, c.env)
	if err != nil {
		return err
	}
	b, closeB, err := c.open(&cn)
	if err != nil {
		return err
	}
	defer closeB()
	cfg.broker = b
	cfg.logger = slog.New(slog.NewJSONHandler(c.stderr, nil))
	if !cfg.loopback && cfg.tls == nil {
		cfg.logger.Warn("console: serving plain HTTP off loopback: the operator token and session cookie cross the network in clear; put it behind TLS or use --console-tls-*", "listen", sf.listen)
	}
	ln, err := net.Listen("tcp", sf.listen)
	if err != nil {
		return fmt.Errorf("serve: listening on %s: %w", sf.listen, err)
	}
	if cfg.tls != nil {
		ln = tls.NewListener(ln, cfg.tls)
	}
	cons, err := newConsole(cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	scheme := "http"
	if cfg.tls != nil {
		scheme = "https"
	}
	fmt.Fprintf(c.stdout, "hubctl: console on %s://%s/ (broker %s)\n", scheme, ln.Addr(), redact(cn.broker))
	return cons.serve(c.ctx, ln)
}

// applyEnv sets the flags named from their HUBCTL_ variables, as parse
// does for the connection flags.
func (c *cli) applyEnv(fs interface{ Set(string, string) error }, names []string) error {
	for _, name := range names {
		key := "HUBCTL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := c.env(key); v != "" {
			if err := fs.Set(name, v); err != nil {
				return usagef("%s: %v", key, err)
			}
		}
	}
	return nil
}

// config checks the flags and turns them into the console's settings; it
// refuses to serve anything but loopback without an operator token or
// client certificates.
func (sf *serveFlags) config(cn conn, env func(string) string) (consoleConfig, error) {
	cfg := consoleConfig{
		dlqSuffix: cn.dlqSuffix, idle: cn.idle, maxScan: cn.maxScan,
		readOnly: sf.readOnly, sample: sf.sample, history: sf.history,
	}
	if cn.idle <= 0 || cn.maxScan <= 0 {
		return cfg, usagef("--idle and --max-scan must be positive")
	}
	if sf.sample < 100*time.Millisecond {
		return cfg, usagef("--sample %s: use 100ms or more", sf.sample)
	}
	if sf.history < 2 || sf.history > 10000 {
		return cfg, usagef("--history %d: use 2 to 10000 samples", sf.history)
	}
	switch {
	case sf.token != "" && sf.tokenFile != "":
		return cfg, usagef("give --token or --token-file, not both")
	case sf.tokenFile != "":
		b, err := os.ReadFile(sf.tokenFile)
		if err != nil {
			return cfg, usagef("--token-file: %v", err)
		}
		cfg.token = strings.TrimSpace(string(b))
		if cfg.token == "" {
			return cfg, usagef("--token-file %s is empty", sf.tokenFile)
		}
	default:
		cfg.token = sf.token
	}
	if cfg.token != "" && len(cfg.token) < 16 {
		return cfg, usagef("the operator token is %d characters; use 16 or more (openssl rand -hex 16)", len(cfg.token))
	}
	if sf.consoleTLS != (broker.TLSFiles{}) {
		t, err := sf.consoleTLS.ServerConfig()
		if err != nil {
			return cfg, usagef("--console-tls-ca/--console-tls-cert/--console-tls-key: %v", err)
		}
		cfg.tls = t
	}
	loopback, err := isLoopback(sf.listen)
	if err != nil {
		return cfg, err
	}
	cfg.loopback = loopback
	if !loopback && cfg.token == "" && cfg.tls == nil {
		return cfg, usagef("--listen %s is not a loopback address: refusing to serve without --token (or HUBCTL_TOKEN, --token-file) or --console-tls-* client certificates", sf.listen)
	}
	for _, spec := range sf.topics {
		t, err := parseTopicSpec(spec)
		if err != nil {
			return cfg, err
		}
		cfg.topics = append(cfg.topics, t)
	}
	for _, m := range sf.metrics {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, usagef("--metrics %q: want an http(s) URL such as http://worker:9090/metrics", m)
		}
		cfg.metrics = append(cfg.metrics, u.String())
	}
	ring, err := sf.keys.keyring(env)
	if err != nil {
		return cfg, err
	}
	cfg.keyring = ring
	return cfg, nil
}

// isLoopback reports whether a listen address binds loopback only.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, usagef("--listen %q: %v (want host:port, such as 127.0.0.1:8080)", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// topicSpec is a --topic: a topic and the consumer groups to report.
type topicSpec struct {
	topic  string
	groups []string
}

func parseTopicSpec(s string) (topicSpec, error) {
	topic, groups, _ := strings.Cut(s, ":")
	t := topicSpec{topic: strings.TrimSpace(topic)}
	if t.topic == "" {
		return t, usagef("--topic %q: name a topic, such as records or records:normalise,audit", s)
	}
	for _, g := range strings.Split(groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			t.groups = append(t.groups, g)
		}
	}
	return t, nil
}

// serve runs the console on ln until ctx is done, then shuts down within
// shutdownTimeout: the HTTP server first, then the sampler and jobs.
func (s *console) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute, // a list of a large DLQ takes a while
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.start()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	s.close() // stop the sampler and jobs first: a list in progress ends
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	if err == nil {
		err = <-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdownTimeout bounds the console's shutdown.
const shutdownTimeout = 10 * time.Second

// specList is a repeatable flag whose values may hold commas.
type specList []string

func (s *specList) String() string     { return strings.Join(*s, " ") }
func (s *specList) Set(v string) error { *s = append(*s, v); return nil }
