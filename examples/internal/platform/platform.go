package platform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/net/netutil"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/broker/kafka"
	"github.com/harvesthub/hub/broker/memory"
	natsbroker "github.com/harvesthub/hub/broker/nats"
	"github.com/harvesthub/hub/broker/sqs"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/idempotency/redisstore"
)

// Check is a readiness check: nil when the dependency it checks is usable.
type Check func(ctx context.Context) error

// Runtime is a running service's shared parts. Create it with New, register
// handlers on Hub and routes on Mux, then call Run once.
type Runtime struct {
	Config  Config
	Logger  *slog.Logger
	Broker  broker.Broker
	Hub     *hub.Hub
	Metrics *Metrics
	// Mux serves /healthz, /readyz and /metrics; services add their routes.
	Mux *http.ServeMux

	store    idempotency.Store // nil: the hub's own memory store
	closers  []func() error    // closed in reverse order after the hub
	mu       sync.Mutex
	checks   []namedCheck
	ready    http.Handler // the hub's ReadinessHandler
	tls      *tls.Config  // nil: plain HTTP
	ln       net.Listener
	draining bool
	closed   bool
}

type namedCheck struct {
	name string
	fn   Check
}

// Option adjusts the hub configuration New builds.
type Option func(*hub.Config)

// New validates cfg and builds the logger (JSON on logOut), metrics, broker,
// idempotency store and hub. It does not listen yet.
func New(ctx context.Context, cfg Config, logOut io.Writer, opts ...Option) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	level, _ := ParseLevel(cfg.LogLevel)
	rt := &Runtime{Config: cfg, Logger: NewLogger(logOut, cfg.Service, level), Mux: http.NewServeMux()}
	ok := false
	var err error
	defer func() {
		if !ok {
			_ = rt.closeResources()
		}
	}()

	if rt.tls, err = serverTLS(cfg); err != nil {
		return nil, err
	}
	m, err := NewMetrics(cfg.Service)
	if err != nil {
		return nil, err
	}
	rt.Metrics = m
	rt.closers = append(rt.closers, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return m.Shutdown(sctx)
	})

	if rt.Broker, err = newBroker(ctx, cfg, rt.Logger); err != nil {
		return nil, err
	}
	rt.closers = append(rt.closers, rt.Broker.Close)

	if rt.store, err = newStore(ctx, cfg, rt.Logger); err != nil {
		return nil, err
	}
	if rt.store != nil {
		rt.closers = append(rt.closers, rt.store.Close)
	}

	hc := hub.Config{
		Logger:          rt.Logger,
		Idempotency:     rt.store,
		MeterProvider:   m.Provider,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Lease:           cfg.Lease,
	}
	for _, o := range opts {
		o(&hc)
	}
	if rt.Hub, err = hub.New(rt.Broker, hc); err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	rt.ready = hub.ReadinessHandler(rt.Hub)
	rt.Mux.Handle("GET /healthz", hub.LivenessHandler(rt.Hub))
	rt.Mux.HandleFunc("GET /readyz", rt.readyz)
	rt.Mux.Handle("GET /metrics", m.Handler())
	ok = true
	return rt, nil
}

func newBroker(ctx context.Context, cfg Config, log *slog.Logger) (broker.Broker, error) {
	switch cfg.Broker {
	case BrokerAMQP:
		b, err := amqp.New(amqp.Config{
			URL:            cfg.AMQPURL,
			ExchangePrefix: cfg.TopicPrefix,
			QueuePrefix:    cfg.TopicPrefix,
			Logger:         log.With("component", "amqp"),
		})
		if err != nil {
			return nil, fmt.Errorf("platform: RabbitMQ at %s: %w", redactURL(cfg.AMQPURL), err)
		}
		return b, nil
	case BrokerSQS:
		b, err := sqs.New(ctx, sqs.Config{
			Endpoint:          cfg.SQSEndpoint,
			Region:            cfg.SQSRegion,
			QueuePrefix:       cfg.TopicPrefix,
			WaitTime:          cfg.SQSWaitTime,
			VisibilityTimeout: cfg.SQSVisibilityTimeout,
			Logger:            log.With("component", "sqs"),
		})
		if err != nil {
			return nil, fmt.Errorf("platform: SQS: %w", err)
		}
		return b, nil
	case BrokerKafka:
		kc, err := kafka.ParseURL(cfg.KafkaURL)
		if err != nil {
			return nil, fmt.Errorf("platform: %w", err)
		}
		kc.Logger = log.With("component", "kafka")
		b, err := kafka.New(kc)
		if err != nil {
			return nil, fmt.Errorf("platform: Kafka at %s: %w", cfg.KafkaURL, err)
		}
		return b, nil
	case BrokerNATS:
		b, err := natsbroker.New(ctx, natsbroker.Config{
			URL:          cfg.NATSURL,
			StreamPrefix: cfg.TopicPrefix,
			Logger:       log.With("component", "nats"),
		})
		if err != nil {
			return nil, fmt.Errorf("platform: NATS: %w", err)
		}
		return b, nil
	default:
		b, err := memory.New(memory.Config{Logger: log.With("component", "memory")})
		if err != nil {
			return nil, fmt.Errorf("platform: memory broker: %w", err)
		}
		return b, nil
	}
}

func newStore(ctx context.Context, cfg Config, log *slog.Logger) (idempotency.Store, error) {
	switch cfg.Store {
	case StoreRedis:
		client := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr})
		s, err := redisstore.New(client, redisstore.Config{Prefix: "hub:idem:" + cfg.TopicPrefix})
		if err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("platform: redis store: %w", err)
		}
		return &closingStore{Store: s, close: client.Close}, nil
	case StorePostgres:
		pool, err := pgxpool.New(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("platform: postgres: %w", err)
		}
		s, err := pgstore.New(pool, pgstore.Config{Logger: log.With("component", "pgstore")})
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("platform: postgres store: %w", err)
		}
		if err := s.Migrate(ctx); err != nil {
			_ = s.Close()
			pool.Close()
			return nil, fmt.Errorf("platform: migrating the idempotency table: %w", err)
		}
		return &closingStore{Store: s, close: func() error { pool.Close(); return nil }}, nil
	default:
		return nil, nil
	}
}

// closingStore closes the store's client after the store.
type closingStore struct {
	idempotency.Store
	close func() error
}

func (s *closingStore) Close() error { return errors.Join(s.Store.Close(), s.close()) }

// AddReadiness adds a check /readyz runs after the hub's own.
func (rt *Runtime) AddReadiness(name string, fn Check) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.checks = append(rt.checks, namedCheck{name, fn})
}

// AddCloser registers fn to run after the hub has drained, before the broker
// closes (in reverse order of registration).
func (rt *Runtime) AddCloser(fn func() error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.closers = append(rt.closers, fn)
}

// readyz is the readiness probe: the service is not draining, every added
// check passes, and then the hub's own ReadinessHandler (broker, store,
// stuck handlers) answers. Failures are named in hub.HealthStatus JSON.
func (rt *Runtime) readyz(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	draining := rt.draining
	checks := append([]namedCheck(nil), rt.checks...)
	rt.mu.Unlock()
	if draining {
		writeJSON(w, http.StatusServiceUnavailable, hub.HealthStatus{Status: "stopping", Checks: map[string]string{"hub": "shutting down"}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), hub.ReadinessTimeoutDefault)
	defer cancel()
	failures := map[string]string{}
	for _, c := range checks {
		if err := c.fn(ctx); err != nil {
			failures[c.name] = err.Error()
		}
	}
	if len(failures) == 0 {
		rt.ready.ServeHTTP(w, r)
		return
	}
	if err := rt.Hub.Health(ctx); err != nil {
		failures["hub"] = err.Error()
	}
	writeJSON(w, http.StatusServiceUnavailable, hub.HealthStatus{Status: "unavailable", Checks: failures})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen binds Config.Listen and returns the bound address (useful with
// port 0). Run calls it when it was not called.
func (rt *Runtime) Listen() (net.Addr, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.ln != nil {
		return rt.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", rt.Config.Listen)
	if err != nil {
		return nil, fmt.Errorf("platform: listening on %s: %w", rt.Config.Listen, err)
	}
	// Beyond MaxConns, connections wait in the kernel's backlog instead
	// of each holding a goroutine and buffers.
	rt.ln = netutil.LimitListener(ln, rt.Config.MaxConns)
	return ln.Addr(), nil
}

// Run serves HTTP and runs the hub until ctx is done (use
// signal.NotifyContext for SIGTERM), then shuts down gracefully: /readyz
// turns unavailable, the HTTP server finishes its requests, the hub stops
// consuming and drains in-flight messages, and the store, broker and
// metrics close. It returns nil after a clean shutdown.
func (rt *Runtime) Run(ctx context.Context) error {
	addr, err := rt.Listen()
	if err != nil {
		return errors.Join(err, rt.Close())
	}
	tlsCfg := rt.tls
	srv := &http.Server{
		Handler:           rt.Mux,
		ReadHeaderTimeout: min(10*time.Second, rt.Config.ReadTimeout),
		ReadTimeout:       rt.Config.ReadTimeout,
		WriteTimeout:      rt.Config.WriteTimeout,
		IdleTimeout:       rt.Config.IdleTimeout,
		MaxHeaderBytes:    rt.Config.MaxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          slog.NewLogLogger(rt.Logger.Handler(), slog.LevelWarn),
	}
	rt.Logger.Info("listening", "addr", addr.String(), "tls", tlsCfg != nil, "client_certs", rt.Config.TLSClientCA != "",
		"broker", rt.Config.Broker, "store", rt.Config.Store)

	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	hubDone := make(chan error, 1)
	go func() { hubDone <- rt.Hub.Run(hubCtx) }()
	srvDone := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			srvDone <- srv.ServeTLS(rt.ln, "", "")
			return
		}
		srvDone <- srv.Serve(rt.ln)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		rt.Logger.Info("shutting down", "cause", context.Cause(ctx).Error())
	case err := <-hubDone:
		hubDone <- err
		runErr = unexpectedStop("hub", err)
	case err := <-srvDone:
		srvDone <- err
		runErr = unexpectedStop("http server", err)
	}
	rt.mu.Lock()
	rt.draining = true
	rt.mu.Unlock()

	sctx, cancel := context.WithTimeout(context.Background(), rt.Config.ShutdownTimeout)
	defer cancel()
	// Stop taking requests first, so nothing is published into a hub
	// that is draining, then drain the hub.
	if err := srv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("platform: http shutdown: %w", err))
	}
	if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, err)
	}
	stopHub()
	if err := <-hubDone; err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("platform: hub: %w", err))
	}
	if err := rt.closeResources(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if runErr == nil {
		rt.Logger.Info("stopped")
	}
	return runErr
}

func unexpectedStop(what string, err error) error {
	if err == nil {
		return fmt.Errorf("platform: %s stopped unexpectedly", what)
	}
	return fmt.Errorf("platform: %s stopped: %w", what, err)
}

// Close releases everything without running; for a Runtime whose Run was
// never called. It is safe to call more than once and after Run.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	ln := rt.ln
	rt.mu.Unlock()
	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	if rt.Hub != nil {
		err = errors.Join(err, rt.Hub.Close())
	}
	return errors.Join(err, rt.closeResources())
}

func (rt *Runtime) closeResources() error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	closers := rt.closers
	rt.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func redactURL(raw string) string {
	if u, err := urlParse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
