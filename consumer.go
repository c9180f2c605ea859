package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/retry"
)

// register adds a handler. Before Run it only declares the handler's group
// on the broker; once Run has started, it also starts the handler's
// consumer and returns the error if its subscription cannot start. No lock
// is held across a broker call, so a slow broker never blocks Publish,
// Health, lease renewal or Shutdown.
func (h *Hub) register(topic, outTopic string, opts []HandlerOption, bind func(*handler)) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	hc := handlerConfig{concurrency: ConcurrencyDefault}
	for _, o := range opts {
		o(&hc)
	}
	if hc.concurrency < 1 {
		return fmt.Errorf("%w: handler of %q: Concurrency(%d); use 1 or more", ErrInvalidConfig, topic, hc.concurrency)
	}
	policy := h.cfg.Retry
	if hc.policy != nil {
		policy = hc.policy.WithDefaults()
		if err := policy.Validate(); err != nil {
			return fmt.Errorf("%w: handler of %q: %w", ErrInvalidConfig, topic, err)
		}
	}
	name := broker.GroupName(topic, hc.name)
	hd := &handler{
		h:           h,
		name:        name,
		topic:       topic,
		outTopic:    outTopic,
		concurrency: hc.concurrency,
		policy:      policy,
		keyPrefix:   scopePrefix(name),
		leases:      make(map[*delivery]struct{}),
	}
	bind(hd)
	if mws := append(append([]message.HandlerMiddleware(nil), h.cfg.Middleware...), hc.middleware...); len(mws) > 0 {
		inner := func(msg *message.Message) ([]*message.Message, error) {
			d := msg.Context().Value(deliveryCtxKey{}).(*delivery)
			return hd.call(msg.Context(), msg, d.value, d)
		}
		chain := message.HandlerFunc(inner)
		for i := len(mws) - 1; i >= 0; i-- {
			chain = mws[i](chain)
		}
		hd.chain = chain
	}

	h.mu.Lock()
	switch h.st {
	case stateStopping, stateClosed:
		h.mu.Unlock()
		return ErrClosed
	}
	if _, dup := h.handlers[name]; dup {
		h.mu.Unlock()
		return fmt.Errorf("%w: %q is taken (topic %q); give this handler another with hub.Name", ErrDuplicateHandler, name, topic)
	}
	h.handlers[name] = hd
	h.order = append(h.order, hd)
	h.mu.Unlock()

	if err := h.declare(hd); err != nil {
		h.unregister(hd)
		return err
	}
	h.mu.Lock()
	live := h.st == stateStarting || h.st == stateRunning
	h.mu.Unlock()
	if !live {
		return nil
	}
	if err := h.startConsumer(hd); err != nil {
		h.unregister(hd)
		if h.stopping() {
			return ErrClosed
		}
		return fmt.Errorf("hub: starting handler %q of %q: %w", hd.name, hd.topic, err)
	}
	h.logConsumer(hd)
	return nil
}

// declare creates the handler's group on the broker, bounded by OpTimeout
// and by the hub stopping.
func (h *Hub) declare(hd *handler) error {
	d, ok := h.b.(broker.Declarer)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(h.drainCtx, max(h.cfg.OpTimeout, 30*time.Second))
	defer cancel()
	if err := d.Declare(ctx, hd.topic, hd.name); err != nil {
		if h.stopping() {
			return ErrClosed
		}
		return fmt.Errorf("hub: declaring group %q of %q: %w", hd.name, hd.topic, err)
	}
	return nil
}

func (h *Hub) unregister(hd *handler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.handlers[hd.name] == hd {
		delete(h.handlers, hd.name)
	}
	for i, x := range h.order {
		if x == hd {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
}

// consumer runs one handler's subscription: Concurrency workers read its
// channel, and a supervisor subscribes again if the channel ends while the
// hub runs. It is stopped by cancelling its context; done closes once its
// workers have returned.
type consumer struct {
	hd     *handler
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// startConsumer subscribes hd's group and starts its workers. It returns
// the subscription's error; a consumer is started at most once.
func (h *Hub) startConsumer(hd *handler) error {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{hd: hd, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	h.mu.Lock()
	if hd.started {
		h.mu.Unlock()
		cancel()
		return nil
	}
	if h.st == stateStopping || h.st == stateClosed {
		h.mu.Unlock()
		cancel()
		return ErrClosed
	}
	hd.started = true
	h.consumers = append(h.consumers, c)
	h.mu.Unlock()

	msgs, err := h.b.SubscribeGroup(ctx, hd.topic, broker.Group{Name: hd.name, Prefetch: hd.concurrency})
	if err != nil {
		cancel()
		close(c.done)
		return err
	}
	go c.supervise(msgs)
	return nil
}

// supervise runs the workers on msgs; if the channel closes while the hub
// is running (a broker that gave up on a subscription), it subscribes
// again with backoff until the hub stops.
func (c *consumer) supervise(msgs <-chan *message.Message) {
	defer close(c.done)
	h, hd := c.hd.h, c.hd
	bo := retry.Policy{InitialInterval: 100 * time.Millisecond, MaxInterval: 10 * time.Second}.WithDefaults().NewBackOff()
	for {
		var wg sync.WaitGroup
		for range hd.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.work(msgs)
			}()
		}
		wg.Wait()
		for {
			if c.ctx.Err() != nil || h.stopping() || isClosed(h.abandon) {
				return
			}
			wait := bo.NextBackOff()
			h.log.Error("hub: subscription ended while running; subscribing again", "handler", hd.name, "topic", hd.topic, "wait", wait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return
			}
			var err error
			msgs, err = h.b.SubscribeGroup(c.ctx, hd.topic, broker.Group{Name: hd.name, Prefetch: hd.concurrency})
			if err == nil {
				break
			}
			h.log.Error("hub: subscribing again failed", "handler", hd.name, "topic", hd.topic, "error", err)
		}
	}
}

// work delivers messages until the channel closes or the hub abandons a
// stuck drain. Once stopping has begun a message is nacked unhandled.
func (c *consumer) work(msgs <-chan *message.Message) {
	h := c.hd.h
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				return
			}
			if h.stopping() {
				msg.Nack()
				continue
			}
			if c.hd.handle(msg) {
				msg.Ack()
			} else {
				msg.Nack()
			}
		case <-h.abandon:
			return
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
