package main

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/dlq"
)

//go:embed console/templates/*.html
var templateFS embed.FS

//go:embed console/static
var staticFS embed.FS

// consoleConfig is what hubctl serve's flags decide.
type consoleConfig struct {
	broker    broker.Broker
	logger    *slog.Logger
	dlqSuffix string
	idle      time.Duration
	maxScan   int
	topics    []topicSpec
	metrics   []string
	sample    time.Duration
	history   int
	token     string
	tls       *tls.Config
	loopback  bool
	readOnly  bool
	keyring   hub.Encrypter
	// httpClient reads /metrics; nil means a client with a 5s timeout.
	httpClient *http.Client
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// console is the web console: an http.Handler over one broker, with a
// sampler goroutine and replay/purge jobs it owns. start starts the
// sampler; close stops the sampler and cancels the jobs, and waits for
// both; close is safe to call twice.
type console struct {
	cfg   consoleConfig
	log   *slog.Logger
	mux   *http.ServeMux
	tmpl  map[string]*template.Template
	cop   *http.CrossOriginProtection
	auth  *sessions
	samp  *sampler
	jobs  *jobs
	locks *dlqLocks

	ctx       context.Context // cancelled by close: ends the sampler and jobs
	cancel    context.CancelFunc
	mu        sync.Mutex // guards closed and wg.Add against close's Wait
	closed    bool
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
}

func newConsole(cfg consoleConfig) (*console, error) {
	if cfg.broker == nil {
		return nil, errors.New("console: no broker")
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.httpClient == nil {
		cfg.httpClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.history < 2 {
		cfg.history = serveHistoryDefault
	}
	if cfg.sample <= 0 {
		cfg.sample = serveSampleDefault
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &console{
		cfg:    cfg,
		log:    cfg.logger,
		tmpl:   tmpl,
		cop:    http.NewCrossOriginProtection(),
		auth:   newSessions(cfg.now),
		locks:  newDLQLocks(),
		ctx:    ctx,
		cancel: cancel,
	}
	s.samp = newSampler(s)
	s.jobs = newJobs()
	s.routes()
	return s, nil
}

// start starts the sampler.
func (s *console) start() {
	s.startOnce.Do(func() { s.goJob(s.samp.run) })
}

// close stops the sampler and the jobs and waits for them.
func (s *console) close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
	})
}

// goJob runs f as a goroutine the console owns: close cancels its context
// and waits for it. After close it runs nothing and returns false.
func (s *console) goJob(f func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
	return true
}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"path":   url.PathEscape,
		"time":   formatTime,
		"plural": plural,
		"num":    func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) },
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "console/templates/base.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	pages, err := fs.Glob(templateFS, "console/templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := p[len("console/templates/") : len(p)-len(".html")]
		if name == "base" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, p)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func (s *console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "console/static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.authed(s.logout))
	m.HandleFunc("GET /{$}", s.authed(s.topicsPage))
	m.HandleFunc("GET /topics/table", s.authed(s.topicsTable))
	m.HandleFunc("GET /handlers", s.authed(s.handlersPage))
	m.HandleFunc("GET /dlq/{topic}", s.authed(s.dlqPage))
	m.HandleFunc("GET /dlq/{topic}/letters/{id}", s.authed(s.letterPage))
	m.HandleFunc("POST /dlq/{topic}/letters/{id}", s.authed(s.letterPage)) // decrypt
	m.HandleFunc("POST /dlq/{topic}/confirm", s.authed(s.writable(s.confirm)))
	m.HandleFunc("POST /dlq/{topic}/run", s.authed(s.writable(s.runAction)))
	m.HandleFunc("GET /jobs/{id}", s.authed(s.jobPage))
	m.HandleFunc("GET /jobs/{id}/status", s.authed(s.jobStatus))
	s.mux = m
}

// ServeHTTP applies the security headers and checks every request passes
// (host, CSRF on state changes), then routes it.
func (s *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if s.cfg.tls != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if s.cfg.loopback && !loopbackHost(r.Host) {
		// A DNS-rebinding page would reach us with its own host name.
		http.Error(w, "hubctl console: unexpected Host header; open it as 127.0.0.1 or localhost", http.StatusMisdirectedRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := s.checkCSRF(r); err != nil {
			s.log.Warn("console: state change refused", "reason", err.Error(), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, "hubctl console: "+err.Error(), http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// maxFormBytes bounds a form: a selection of 10000 letter IDs fits.
const maxFormBytes = 4 << 20

// page renders a template with the common fields.
type page struct {
	Title    string
	Nav      string
	CSRF     string
	Who      string
	ReadOnly bool
	Login    bool // a token is asked for: show the logout button
	Data     any
}

func (s *console) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	t := s.tmpl[name]
	p := page{Title: title, Nav: nav, ReadOnly: s.cfg.readOnly, Login: s.cfg.token != "", Data: data}
	if sess := sessionFrom(r.Context()); sess != nil {
		p.CSRF, p.Who = sess.csrf, sess.who
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "base", p); err != nil {
		s.log.Error("console: rendering", "template", name, "err", err.Error())
	}
}

// fail renders an error page.
func (s *console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", "Error", "", msg)
}

// dlqTopicOf checks that topic has a dead-letter queue before anything
// subscribes to it (a subscription would create it on RabbitMQ).
func (s *console) dlqTopicOf(ctx context.Context, topic string) (string, error) {
	if topic == "" {
		return "", fmt.Errorf("no topic: %w", broker.ErrUnknownTopic)
	}
	d := topic + s.cfg.dlqSuffix
	if in, ok := s.cfg.broker.(broker.Inspector); ok {
		if _, err := in.Queues(ctx, d); err != nil {
			return "", fmt.Errorf("%s has no dead-letter queue %s: %w", topic, d, err)
		}
	}
	return d, nil
}

func (s *console) options(f dlq.Filter, limit int) dlq.Options {
	return dlq.Options{Filter: f, Limit: limit, Idle: s.cfg.idle, MaxScan: s.cfg.maxScan}
}

// dlqLocks serialises the dlq calls on one dead-letter topic: a scan
// holds the letters it read unacked, so two at once would each see part.
type dlqLocks struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

func newDLQLocks() *dlqLocks { return &dlqLocks{locks: map[string]chan struct{}{}} }

// lock waits for topic's lock or ctx; the returned function unlocks.
func (l *dlqLocks) lock(ctx context.Context, topic string) (func(), error) {
	l.mu.Lock()
	ch := l.locks[topic]
	if ch == nil {
		ch = make(chan struct{}, 1)
		l.locks[topic] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
