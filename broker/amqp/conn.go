package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/harvesthub/hub/broker"
)

// conn owns the AMQP connection and replaces it when it is lost.
type conn struct {
	cfg     Config
	log     *slog.Logger
	closing <-chan struct{}

	// frameMax is the frame_max negotiated with the server, bytes.
	frameMax atomic.Int64

	mu    sync.Mutex
	c     *amqp091.Connection
	node  int           // index in cfg.URLs of c's node
	gen   uint64        // incremented on every new connection
	ready chan struct{} // closed once c is usable
	down  chan struct{} // closed once c is lost
}

// dialAny connects to the first node of cfg.URLs that answers, trying
// them in turn from index first. It returns the connection and its node's
// index, or an error naming every node's failure.
func dialAny(cfg Config, first int) (*amqp091.Connection, int, error) {
	var errs []error
	for i := range cfg.URLs {
		n := (first + i) % len(cfg.URLs)
		c, err := dial(cfg, cfg.URLs[n])
		if err == nil {
			return c, n, nil
		}
		errs = append(errs, err)
	}
	return nil, 0, errors.Join(errs...)
}

func dial(cfg Config, rawURL string) (*amqp091.Connection, error) {
	ac := amqp091.Config{
		Heartbeat: 10 * time.Second,
		Locale:    "en_US",
		Dial:      amqp091.DefaultDial(cfg.DialTimeout),
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, err
		}
		ac.TLSClientConfig = tc
	} else {
		ac.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c, err := amqp091.DialConfig(rawURL, ac)
	if err != nil {
		return nil, fmt.Errorf("amqp: connect to %s: %w", redact(rawURL), err)
	}
	return c, nil
}

// newConn connects to the first node that answers; the connection is then
// kept up by run.
func newConn(cfg Config, closing <-chan struct{}) (*conn, error) {
	c, node, err := dialAny(cfg, 0)
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	close(ready)
	cn := &conn{cfg: cfg, log: cfg.Logger, closing: closing, c: c, node: node, gen: 1, ready: ready, down: make(chan struct{})}
	cn.frameMax.Store(int64(c.Config.FrameSize))
	return cn, nil
}

// get returns the current connection and its generation, waiting for a
// reconnection when it is down.
func (c *conn) get(ctx context.Context) (*amqp091.Connection, uint64, error) {
	for {
		c.mu.Lock()
		cur, gen, ready, down := c.c, c.gen, c.ready, c.down
		c.mu.Unlock()
		select {
		case <-ready:
			if !cur.IsClosed() {
				return cur, gen, nil
			}
			// Lost, and run has not noticed yet: wait for it to.
			select {
			case <-down:
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("amqp: waiting for a connection: %w", ctx.Err())
			case <-c.closing:
				return nil, 0, broker.ErrClosed
			}
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("amqp: waiting for a connection: %w", ctx.Err())
		case <-c.closing:
			return nil, 0, broker.ErrClosed
		}
	}
}

// closeTimeout bounds the wait for RabbitMQ's close-ok when the broker
// closes its connection.
const closeTimeout = 5 * time.Second

// run watches the connection and reconnects with backoff until closing,
// trying the other nodes first: the next node after the lost one, then
// every node in turn, with a backoff pause after each round that failed.
// It closes the last connection on return.
func (c *conn) run() {
	defer func() {
		c.mu.Lock()
		cur := c.c
		c.mu.Unlock()
		if cur != nil && !cur.IsClosed() {
			// Bounded: a server that stopped answering must not hold
			// Close until the heartbeat gives up on it.
			_ = cur.CloseDeadline(time.Now().Add(min(c.cfg.DialTimeout, closeTimeout)))
		}
	}()
	for {
		c.mu.Lock()
		cur, node := c.c, c.node
		c.mu.Unlock()
		notify := cur.NotifyClose(make(chan *amqp091.Error, 1))
		select {
		case <-c.closing:
			return
		case err := <-notify:
			c.mu.Lock()
			c.ready = make(chan struct{})
			close(c.down)
			c.mu.Unlock()
			c.log.Warn("amqp: connection lost, reconnecting", "url", redact(c.cfg.URLs[node]), "error", errString(err))
		}

		bo := backoff.NewExponentialBackOff()
		bo.InitialInterval = c.cfg.ReconnectMin
		bo.MaxInterval = c.cfg.ReconnectMax
		bo.MaxElapsedTime = 0
		timer := time.NewTimer(0)
		for {
			select {
			case <-c.closing:
				timer.Stop()
				return
			case <-timer.C:
			}
			next, n, err := dialAny(c.cfg, node+1)
			if err == nil {
				c.frameMax.Store(int64(next.Config.FrameSize))
				c.mu.Lock()
				c.c, c.node = next, n
				c.gen++
				c.down = make(chan struct{})
				close(c.ready)
				c.mu.Unlock()
				c.log.Info("amqp: reconnected", "url", redact(c.cfg.URLs[n]))
				break
			}
			d := bo.NextBackOff()
			c.log.Debug("amqp: reconnect failed", "error", err, "retry_in", d)
			timer.Reset(d)
		}
	}
}

func errString(err *amqp091.Error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// errNotConnected is returned by Ping while reconnecting.
var errNotConnected = errors.New("amqp: not connected (reconnecting)")

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
