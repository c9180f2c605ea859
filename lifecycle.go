package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The hub's lifecycle is one small state machine. Every transition happens
// in this file, under lifecycle.mu:
//
//	new ──Run──▶ starting ──every consumer subscribed──▶ running
//	 │              │                                       │
//	 │              └──a subscription failed──▶ stopping ◀──┘ Shutdown, Close, Run's ctx
//	 └──────────────Shutdown, Close─────────────▶ stopping ──drained──▶ closed
//
// Run starts one consumer per handler synchronously (subscribe, return the
// error) and unwinds what it started when one fails. Stopping cancels every
// subscription, waits for in-flight deliveries, and is bounded: Shutdown by
// its context, Close by the bookkeeping grace (see stop).
type state int

const (
	stateNew state = iota
	stateStarting
	stateRunning
	stateStopping
	stateClosed
)

type lifecycle struct {
	mu        sync.Mutex
	st        state
	handlers  map[string]*handler // registered, by name
	order     []*handler          // registration order
	consumers []*consumer         // started (or starting) subscriptions

	stopped     chan struct{} // closed when stopping begins
	running     chan struct{} // closed once Run started every handler, or failed to
	runningOnce sync.Once
	abandon     chan struct{} // closed when the stop gives up waiting on a stuck consumer
	done        chan struct{} // closed once the hub is closed
	finishErr   error

	bg sync.WaitGroup // the lease renewer
}

func (l *lifecycle) init() {
	l.handlers = make(map[string]*handler)
	l.stopped = make(chan struct{})
	l.running = make(chan struct{})
	l.abandon = make(chan struct{})
	l.done = make(chan struct{})
}

// Running returns a channel closed once Run has started every handler, or
// has failed to (Run then returns the error).
func (h *Hub) Running() <-chan struct{} { return h.running }

func (h *Hub) markRunning() { h.runningOnce.Do(func() { close(h.running) }) }

// Run starts every registered handler and blocks until ctx is done or
// Shutdown or Close is called. When ctx ends, Run drains: it stops
// consuming, lets in-flight handlers finish within Config.ShutdownTimeout,
// nacks what is unfinished, and returns nil. A handler whose subscription
// cannot start (an unreachable broker, a queue the broker refuses) makes Run
// stop what it started and return the error. A second Run returns
// ErrRunning; Run after Close returns ErrClosed.
func (h *Hub) Run(ctx context.Context) error {
	h.mu.Lock()
	switch h.st {
	case stateStarting, stateRunning:
		h.mu.Unlock()
		return ErrRunning
	case stateStopping, stateClosed:
		h.mu.Unlock()
		return ErrClosed
	}
	h.st = stateStarting
	hds := append([]*handler(nil), h.order...)
	h.bg.Add(1) // under mu: finish's Wait never races this Add
	h.mu.Unlock()
	go h.renewLeases()

	for _, hd := range hds {
		if err := h.startConsumer(hd); err != nil {
			h.markRunning()
			if h.stopping() {
				// Stopped while starting: not a failure of this Run.
				<-h.done
				return nil
			}
			h.Close()
			return fmt.Errorf("hub: starting handler %q of %q: %w", hd.name, hd.topic, err)
		}
	}
	h.mu.Lock()
	if h.st == stateStarting {
		h.st = stateRunning
	}
	h.mu.Unlock()
	h.markRunning()
	h.logStart(hds)

	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), h.cfg.ShutdownTimeout)
		err := h.Shutdown(sctx)
		cancel()
		if err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
		return nil
	case <-h.stopped:
		<-h.done
		return nil
	}
}

// beginStop moves the hub to stopping and cancels every subscription; it
// reports whether this call did.
func (h *Hub) beginStop() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == stateStopping || h.st == stateClosed {
		return false
	}
	h.st = stateStopping
	if len(h.consumers) > 0 {
		h.logDrainBegin()
	}
	close(h.stopped)
	h.drainCancel()
	for _, c := range h.consumers {
		c.cancel()
	}
	return true
}

// stopping reports whether shutdown has begun. beginStop ends drainCtx
// before anything cancels workCtx (Close, Shutdown's deadline), so a
// handler's error after the hub cancelled its context is always seen as
// shutdown, never as a failure to dead-letter.
func (h *Hub) stopping() bool { return h.drainCtx.Err() != nil }

// Shutdown stops consuming and waits for in-flight handlers to finish. An
// in-process retry wait is cut short and its message nacked, never acked.
// If ctx ends first, handler contexts are cancelled, their messages nacked,
// and Shutdown returns ctx.Err() once they have returned (or once the
// bookkeeping grace, about twice Config.OpTimeout, has passed for a handler
// that ignores its context). The broker is not closed: it is the caller's.
// Shutdown and Close are safe to call more than once, in any order and
// concurrently with Run; a later call waits for the first (cutting it short
// when its own ctx ends first) and returns nil.
func (h *Hub) Shutdown(ctx context.Context) error {
	if !h.beginStop() {
		select {
		case <-h.done:
			return nil
		case <-ctx.Done():
			h.workCancel()
			<-h.done
			return nil
		}
	}
	err := h.stop(ctx)
	return errors.Join(err, h.finish())
}

// Close stops the hub at once: handler contexts are cancelled and
// unfinished messages nacked. It waits for handlers to return, at most
// about twice Config.OpTimeout for one that ignores its context.
func (h *Hub) Close() error {
	first := h.beginStop()
	h.workCancel()
	if !first {
		<-h.done
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = h.stop(ctx)
	return h.finish()
}

// stop waits for every consumer to drain. When ctx ends first it cancels
// the handlers' context and waits a bounded grace more; past that it
// abandons consumers still stuck in a handler (their messages stay unacked
// and the broker delivers them again) so that stop always returns.
func (h *Hub) stop(ctx context.Context) error {
	h.mu.Lock()
	cs := append([]*consumer(nil), h.consumers...)
	h.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		for _, c := range cs {
			<-c.done
		}
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	h.workCancel()
	grace := time.NewTimer(2*h.cfg.OpTimeout + 100*time.Millisecond)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
		// A handler ignores its cancelled context. Its worker keeps its
		// goroutine until the handler returns; the rest stop now.
		close(h.abandon)
		h.log.Error("hub: a handler ignored its cancelled context past the shutdown grace; returning without it", "grace", 2*h.cfg.OpTimeout)
	}
	return ctx.Err()
}

// finish releases what the hub owns once its consumers are done.
func (h *Hub) finish() error {
	h.bgCancel()
	h.bg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st == stateClosed {
		return h.finishErr
	}
	h.st = stateClosed
	if h.ownsStore {
		if err := h.store.Close(); err != nil {
			h.finishErr = fmt.Errorf("hub: closing idempotency store: %w", err)
		}
	}
	h.markRunning()
	close(h.done)
	if len(h.consumers) > 0 {
		h.logDrained()
	}
	return h.finishErr
}
