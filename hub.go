package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

// Sentinel errors callers branch on.
var (
	// ErrClosed is returned by Publish, Handle and Run after Shutdown or Close.
	ErrClosed = errors.New("hub: closed")
	// ErrRunning is returned by a second Run.
	ErrRunning = errors.New("hub: already running")
	// ErrDuplicateHandler is returned by Handle for a handler name in use.
	ErrDuplicateHandler = errors.New("hub: duplicate handler name")
	// ErrInvalidConfig wraps every configuration error from New and Handle.
	ErrInvalidConfig = errors.New("hub: invalid configuration")
)

// Defaults of Config fields left zero.
const (
	DeadLetterSuffixDefault = ".dlq"
	LeaseDefault            = 30 * time.Second
	RetentionDefault        = 24 * time.Hour
	ShutdownTimeoutDefault  = 30 * time.Second
	ConcurrencyDefault      = 1
	// MinLease is the shortest Config.Lease: the hub renews a lease every
	// third of it.
	MinLease = 30 * time.Millisecond
)

// Encrypter seals payloads before they reach the broker and opens them
// before they are decoded. middleware.Keyring implements it with
// AES-256-GCM. The key ID travels in hub-enc-key-id.
type Encrypter interface {
	Encrypt(plaintext []byte) (keyID string, ciphertext []byte, err error)
	Decrypt(keyID string, ciphertext []byte) ([]byte, error)
}

// Config configures a Hub. The zero Config works: every field has a default.
type Config struct {
	// Logger receives the hub's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Codec encodes payloads. Defaults to JSON.
	Codec Codec
	// Retry is the default retry policy of every handler; WithHandlerRetry
	// overrides it per handler. Zero fields take the retry package defaults.
	Retry retry.Policy
	// Idempotency records handled keys. Defaults to a memory store owned
	// (and closed) by the hub; a store passed here is the caller's to close.
	Idempotency idempotency.Store
	// Lease is how long a claim on a key lasts before another worker may take
	// it. The hub extends it every third of it while the message is being
	// handled, so it bounds how long a crashed worker's message waits, not
	// how long a handler may run. Defaults to 30s.
	Lease time.Duration
	// Retention is how long a completed key is remembered, so how late a
	// duplicate is still caught. Defaults to 24h.
	Retention time.Duration
	// DeadLetterSuffix names each topic's dead-letter topic. Defaults to
	// ".dlq": topic "records" dead-letters to "records.dlq".
	DeadLetterSuffix string
	// MeterProvider, TracerProvider and Propagator default to the global
	// OpenTelemetry ones (no-ops unless the application installs an SDK).
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Encryption, when set, encrypts every published payload and decrypts
	// every consumed one. Defaults to nil: payloads travel as encoded.
	Encryption Encrypter
	// Middleware wraps every attempt of every handler, outermost first. It is
	// plain Watermill middleware. The hub's own steps (idempotency, decoding,
	// retries, dead-lettering) always sit outside it; see the package doc.
	Middleware []message.HandlerMiddleware
	// ShutdownTimeout bounds the drain Run performs when its context ends.
	// Defaults to 30s.
	ShutdownTimeout time.Duration
	// StuckAfter makes Health report a handler attempt running longer than
	// this as stuck. Defaults to 0: never.
	StuckAfter time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Codec == nil {
		c.Codec = JSON{}
	}
	c.Retry = c.Retry.WithDefaults()
	if c.Lease == 0 {
		c.Lease = LeaseDefault
	}
	if c.Retention == 0 {
		c.Retention = RetentionDefault
	}
	if c.DeadLetterSuffix == "" {
		c.DeadLetterSuffix = DeadLetterSuffixDefault
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	return c
}

func (c Config) validate() error {
	if err := c.Retry.Validate(); err != nil {
		return err
	}
	switch {
	case c.Lease < MinLease:
		return fmt.Errorf("config Lease is %v; set at least %v (it bounds how long a crashed worker's message waits), or 0 for %v", c.Lease, MinLease, LeaseDefault)
	case c.Retention < 0:
		return fmt.Errorf("config Retention is %v; set a positive duration, or 0 for %v", c.Retention, RetentionDefault)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("config ShutdownTimeout is %v; set a positive duration, or 0 for %v", c.ShutdownTimeout, ShutdownTimeoutDefault)
	case c.StuckAfter < 0:
		return fmt.Errorf("config StuckAfter is %v; set a positive duration, or 0 to never report stuck handlers", c.StuckAfter)
	}
	return nil
}

type state int

const (
	stateNew state = iota
	stateRunning
	stateStopping
	stateClosed
)

// Hub connects typed handlers to a broker with idempotency, retries and
// dead-lettering. Create it with New, register handlers with Handle or Pipe,
// then Run it. All methods are safe for concurrent use.
type Hub struct {
	b         broker.Broker
	cfg       Config
	store     idempotency.Store
	ownsStore bool
	router    *message.Router
	schemas   schemaRegistry
	tel       *telemetry
	log       *slog.Logger

	// drainCtx ends when shutdown begins: retry waits stop and nack.
	drainCtx    context.Context
	drainCancel context.CancelFunc
	// workCtx ends on Close or when Shutdown's deadline passes: handlers see
	// it as their context.
	workCtx    context.Context
	workCancel context.CancelFunc

	mu       sync.Mutex
	st       state
	handlers map[string]*handler
	runCtx   context.Context // the router's run context, set by Run
	stopped  chan struct{}   // closed when shutdown begins
	routerUp chan struct{}   // closed once the router runs

	routerClose    sync.Once
	routerClosed   chan struct{}
	routerCloseErr error
	finishOnce     sync.Once
	finishErr      error
	renewWG        sync.WaitGroup // the lease renewal loop, started by Run
}

// New returns a Hub on broker b. It validates cfg and fills its defaults.
func New(b broker.Broker, cfg Config) (*Hub, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: broker is nil; pass one such as memory.New", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	h := &Hub{
		b:            b,
		cfg:          cfg,
		store:        cfg.Idempotency,
		log:          cfg.Logger,
		handlers:     make(map[string]*handler),
		stopped:      make(chan struct{}),
		routerUp:     make(chan struct{}),
		routerClosed: make(chan struct{}),
	}
	if h.store == nil {
		s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		if err != nil {
			return nil, fmt.Errorf("hub: memory idempotency store: %w", err)
		}
		h.store, h.ownsStore = s, true
	}
	router, err := message.NewRouter(message.RouterConfig{
		// The hub bounds the drain itself (Shutdown's context); the router
		// waits as long as handlers run.
		CloseTimeout: 365 * 24 * time.Hour,
	}, watermillLogger{l: cfg.Logger.With("component", "watermill")})
	if err != nil {
		if h.ownsStore {
			_ = h.store.Close()
		}
		return nil, fmt.Errorf("hub: router: %w", err)
	}
	h.router = router
	h.tel = newTelemetry(cfg, b.Name())
	h.drainCtx, h.drainCancel = context.WithCancel(context.Background())
	h.workCtx, h.workCancel = context.WithCancel(context.Background())
	return h, nil
}

// Broker returns the broker the hub runs on.
func (h *Hub) Broker() broker.Broker { return h.b }

// Logger returns the hub's logger.
func (h *Hub) Logger() *slog.Logger { return h.log }

// DeadLetterTopic returns the dead-letter topic of topic.
func (h *Hub) DeadLetterTopic(topic string) string { return topic + h.cfg.DeadLetterSuffix }

// Run starts every registered handler and blocks until ctx is done or
// Shutdown or Close is called. When ctx ends, Run drains: it stops
// consuming, lets in-flight handlers finish within Config.ShutdownTimeout,
// nacks what is unfinished, and returns nil. A second Run returns ErrRunning;
// Run after Close returns ErrClosed.
func (h *Hub) Run(ctx context.Context) error {
	h.mu.Lock()
	switch h.st {
	case stateRunning:
		h.mu.Unlock()
		return ErrRunning
	case stateStopping, stateClosed:
		h.mu.Unlock()
		return ErrClosed
	}
	h.st = stateRunning
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	h.runCtx = runCtx
	h.mu.Unlock()

	h.renewWG.Add(1)
	go h.renewLeases()
	routerErr := make(chan error, 1)
	go func() { routerErr <- h.router.Run(runCtx) }()

	select {
	case <-h.router.Running():
		close(h.routerUp)
	case err := <-routerErr:
		h.abort()
		return fmt.Errorf("hub: starting handlers: %w", err)
	}

	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), h.cfg.ShutdownTimeout)
		err := h.Shutdown(sctx)
		cancel()
		<-routerErr
		if err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
		return nil
	case <-h.stopped:
		<-h.routerClosed
		<-routerErr
		return nil
	}
}

// abort closes everything after a failed start.
func (h *Hub) abort() {
	h.beginStop()
	h.workCancel()
	h.closeRouter()
	<-h.routerClosed
	_ = h.finish()
}

// Running returns a channel closed once Run has started every handler.
func (h *Hub) Running() <-chan struct{} { return h.routerUp }

// beginStop moves the hub to stopping; it reports whether this call did.
func (h *Hub) beginStop() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == stateStopping || h.st == stateClosed {
		return false
	}
	h.st = stateStopping
	close(h.stopped)
	h.drainCancel()
	return true
}

func (h *Hub) closeRouter() {
	h.routerClose.Do(func() {
		h.mu.Lock()
		ran := h.runCtx != nil
		h.mu.Unlock()
		if !ran {
			// A router that never ran waits forever for handlers it never
			// started; there is nothing to close.
			close(h.routerClosed)
			return
		}
		go func() {
			h.routerCloseErr = h.router.Close()
			close(h.routerClosed)
		}()
	})
}

func (h *Hub) finish() error {
	h.finishOnce.Do(func() {
		h.workCancel()
		h.renewWG.Wait()
		h.mu.Lock()
		h.st = stateClosed
		h.mu.Unlock()
		var errs []error
		if h.routerCloseErr != nil {
			errs = append(errs, fmt.Errorf("hub: closing router: %w", h.routerCloseErr))
		}
		if h.ownsStore {
			if err := h.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("hub: closing idempotency store: %w", err))
			}
		}
		h.finishErr = errors.Join(errs...)
	})
	return h.finishErr
}

// Shutdown stops consuming and waits for in-flight handlers to finish. An
// in-process retry wait is cut short and its message nacked, never acked.
// If ctx ends first, handler contexts are cancelled, their messages nacked,
// and Shutdown returns ctx.Err() once they have returned. The broker is not
// closed: it is the caller's. Shutdown and Close are safe to call more than
// once, in any order; later calls wait for the first and return nil.
func (h *Hub) Shutdown(ctx context.Context) error {
	if !h.beginStop() {
		<-h.routerClosed
		return nil
	}
	h.closeRouter()
	select {
	case <-h.routerClosed:
		return h.finish()
	case <-ctx.Done():
		h.workCancel()
		<-h.routerClosed
		return errors.Join(ctx.Err(), h.finish())
	}
}

// Close stops the hub at once: handler contexts are cancelled and
// unfinished messages nacked. It waits for handlers to return.
func (h *Hub) Close() error {
	if !h.beginStop() {
		h.workCancel()
		<-h.routerClosed
		return nil
	}
	h.workCancel()
	h.closeRouter()
	<-h.routerClosed
	return h.finish()
}

// stopping reports whether shutdown has begun.
func (h *Hub) stopping() bool { return h.drainCtx.Err() != nil }

// Health returns nil when the broker and the idempotency store are
// reachable and no handler attempt has run past Config.StuckAfter. Each
// failed check is a *CheckError naming it; HealthHandler serves the result.
func (h *Hub) Health(ctx context.Context) error {
	h.mu.Lock()
	st := h.st
	h.mu.Unlock()
	if st == stateClosed {
		return ErrClosed
	}
	var errs []error
	if err := h.b.Ping(ctx); err != nil {
		errs = append(errs, &CheckError{Check: "broker", Err: fmt.Errorf("hub: broker %s unreachable: %w", h.b.Name(), err)})
	}
	if err := h.store.Ping(ctx); err != nil {
		errs = append(errs, &CheckError{Check: "idempotency", Err: fmt.Errorf("hub: idempotency store unreachable: %w", err)})
	}
	if h.cfg.StuckAfter > 0 {
		h.mu.Lock()
		for _, hd := range h.handlers {
			if since := hd.oldestAttempt(); !since.IsZero() && time.Since(since) > h.cfg.StuckAfter {
				errs = append(errs, &CheckError{Check: "handler " + hd.name, Err: fmt.Errorf("hub: handler %q has an attempt running for %v, longer than StuckAfter %v", hd.name, time.Since(since).Round(time.Millisecond), h.cfg.StuckAfter)})
			}
		}
		h.mu.Unlock()
	}
	return errors.Join(errs...)
}
