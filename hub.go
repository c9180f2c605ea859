package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	OpTimeoutDefault        = 10 * time.Second
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
	// OpTimeout bounds each call the hub makes on its own behalf: every
	// idempotency store call (claim, complete, release, extend) and every
	// publish of a delayed retry, a dead letter or a Pipe output. A hung
	// store or broker costs a delivery at most this, never a stuck worker,
	// and Close waits at most about twice this for bookkeeping after the
	// handlers returned. Defaults to 10s.
	OpTimeout time.Duration
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
	if c.OpTimeout == 0 {
		c.OpTimeout = OpTimeoutDefault
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
	case c.OpTimeout < 0:
		return fmt.Errorf("config OpTimeout is %v; set a positive duration, or 0 for %v", c.OpTimeout, OpTimeoutDefault)
	case c.StuckAfter < 0:
		return fmt.Errorf("config StuckAfter is %v; set a positive duration, or 0 to never report stuck handlers", c.StuckAfter)
	}
	return nil
}

// Hub connects typed handlers to a broker with idempotency, retries and
// dead-lettering. Create it with New, register handlers with Handle or Pipe,
// then Run it. All methods are safe for concurrent use.
type Hub struct {
	b         broker.Broker
	cfg       Config
	store     idempotency.Store
	ownsStore bool
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
	// bgCtx ends when the hub is closed: the lease renewer stops.
	bgCtx    context.Context
	bgCancel context.CancelFunc

	lifecycle
	counts counts
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
		b:     b,
		cfg:   cfg,
		store: cfg.Idempotency,
		log:   cfg.Logger,
	}
	h.lifecycle.init()
	if h.store == nil {
		s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
		if err != nil {
			return nil, fmt.Errorf("hub: memory idempotency store: %w", err)
		}
		h.store, h.ownsStore = s, true
	}
	h.tel = newTelemetry(cfg, b.Name())
	h.drainCtx, h.drainCancel = context.WithCancel(context.Background())
	h.workCtx, h.workCancel = context.WithCancel(context.Background())
	h.bgCtx, h.bgCancel = context.WithCancel(context.Background())
	return h, nil
}

// Broker returns the broker the hub runs on.
func (h *Hub) Broker() broker.Broker { return h.b }

// Logger returns the hub's logger.
func (h *Hub) Logger() *slog.Logger { return h.log }

// DeadLetterTopic returns the dead-letter topic of topic.
func (h *Hub) DeadLetterTopic(topic string) string { return topic + h.cfg.DeadLetterSuffix }

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
