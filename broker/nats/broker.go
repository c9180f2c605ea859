package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/harvesthub/hub/broker"
)

// Broker is the NATS JetStream adapter. Create it with [New]; it is safe
// for concurrent use.
type Broker struct {
	cfg    Config
	nc     *natsgo.Conn
	js     jetstream.JetStream
	dialer *dialer

	// ctx is cancelled by Close; subscriptions and Publish use it.
	ctx    context.Context
	cancel context.CancelFunc
	subs   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// declared holds, per stream, the consumers known to exist.
	declared map[string]map[string]bool

	closeOnce sync.Once
}

var (
	_ broker.Broker           = (*Broker)(nil)
	_ broker.Delayer          = (*Broker)(nil)
	_ broker.Declarer         = (*Broker)(nil)
	_ broker.Inspector        = (*Broker)(nil)
	_ broker.ContextPublisher = (*Broker)(nil)
	_ broker.SizeLimiter      = (*Broker)(nil)
)

// ErrNoJetStream is returned (wrapped) by New and Ping when the server
// answers but JetStream is not enabled for the account.
var ErrNoJetStream = errors.New("nats: JetStream is not enabled on the server (start nats-server with -js)")

// New connects to the server in cfg, checks that JetStream answers, and
// returns the Broker. ctx bounds the connection (or Config.ConnectTimeout
// when ctx has no deadline); later reconnections are the client's own,
// forever, every two seconds.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	timeout := cfg.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	d := &dialer{timeout: timeout}
	d.ctx.Store(&ctx)
	log := cfg.Logger
	opts := []natsgo.Option{
		natsgo.Name(cfg.Name),
		natsgo.Timeout(timeout),
		natsgo.SetCustomDialer(d),
		natsgo.MaxReconnects(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("nats: connection lost; reconnecting", "error", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("nats: asynchronous error", "error", err)
		}),
	}
	if cfg.TLS != nil {
		files := *cfg.TLS
		if files.ServerName == "" {
			// The hook that verifies the server reads the name from the
			// config it was built with, not from the copy nats.go dials
			// with: name the host of the first URL.
			files.ServerName = firstHost(cfg.URL)
		}
		tlsCfg, err := files.Config()
		if err != nil {
			return nil, fmt.Errorf("nats: TLS: %w", err)
		}
		opts = append(opts, natsgo.Secure(tlsCfg))
	}
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("nats: cannot connect to %s: %w", redact(cfg.URL), err)
	}
	bg := context.Background()
	d.ctx.Store(&bg) // reconnections outlive New's context
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: JetStream: %w", err)
	}
	bctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg: cfg, nc: nc, js: js, dialer: d,
		ctx: bctx, cancel: cancel,
		declared: map[string]map[string]bool{},
	}
	if err := b.Ping(ctx); err != nil {
		cancel()
		nc.Close()
		return nil, err
	}
	return b, nil
}

// firstHost is the host of the first server URL in raw.
func firstHost(raw string) string {
	first, _, _ := strings.Cut(raw, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// dialer dials with a context, so that New honours its own.
type dialer struct {
	ctx     atomic.Pointer[context.Context]
	timeout time.Duration
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	return nd.DialContext(*d.ctx.Load(), network, address)
}

// Name returns "nats", the OpenTelemetry messaging.system value.
func (b *Broker) Name() string { return "nats" }

// Ping returns nil when the connection is up and JetStream answers.
func (b *Broker) Ping(ctx context.Context) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats: not connected to %s (%s)", redact(b.cfg.URL), b.nc.Status())
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("nats: %s: %w", redact(b.cfg.URL), ErrNoJetStream)
		}
		return fmt.Errorf("nats: JetStream at %s does not answer: %w", redact(b.cfg.URL), err)
	}
	return nil
}

// wireOverhead is what a message costs on the wire besides its payload
// and metadata: the header preamble and the adapter's own headers
// (UUID, Nats-Msg-Id, not-before).
const wireOverhead = 256

// MaxMessageSize is the server's max_payload less room for the adapter's
// own headers. Each metadata key costs 4 more bytes on the wire (": " and
// CRLF); Publish checks the exact size.
func (b *Broker) MaxMessageSize() int {
	return max(int(b.nc.MaxPayload())-wireOverhead, 0)
}

// Close stops every subscription: messages delivered and not yet acked
// are nacked so JetStream delivers them again at once (acks already given
// are sent first). It then closes the connection. Close is safe to call
// more than once, and concurrently.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.subs.Wait()
	b.closeOnce.Do(func() {
		_ = b.nc.FlushTimeout(time.Second) // acks and nacks
		b.nc.Close()
	})
	return nil
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
