package memory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
)

var (
	_ broker.Broker           = (*Broker)(nil)
	_ broker.Delayer          = (*Broker)(nil)
	_ broker.Declarer         = (*Broker)(nil)
	_ broker.ContextPublisher = (*Broker)(nil)
	_ broker.SizeLimiter      = (*Broker)(nil)
)

// Broker is the in-process broker. Create it with [New]; every method may be
// called concurrently.
type Broker struct {
	cfg Config

	closed  atomic.Bool   // set under mu
	closing chan struct{} // closed by Close

	mu     sync.RWMutex // guards topics; wg.Add happens under it while open
	topics map[string]*topic
	wg     sync.WaitGroup // deliverers and the delay scheduler

	delay delayState

	// Idle watching: changed is closed and replaced on every state change
	// while someone waits in WaitIdle.
	watchers atomic.Int32
	imu      sync.Mutex
	changedC chan struct{}
}

// topic holds a topic's groups. Until a group is declared, groups holds the
// implicit backlog only; the first declared group takes it over.
type topic struct {
	b    *Broker
	name string

	groups atomic.Pointer[[]*group] // copy on write, under mu

	mu     sync.Mutex
	byName map[string]*group

	redeliver atomic.Int64 // RedeliverAfterAck budget
}

// New returns a broker configured by cfg.
func New(cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:      cfg,
		closing:  make(chan struct{}),
		topics:   make(map[string]*topic),
		changedC: make(chan struct{}),
	}
	b.delay.init()
	return b, nil
}

// Name returns "memory", the messaging.system of this broker.
func (b *Broker) Name() string { return "memory" }

// Ping returns nil unless the broker is closed.
func (b *Broker) Ping(context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("memory: ping: %w", broker.ErrClosed)
	}
	return nil
}

// topic returns the topic named name, creating it.
func (b *Broker) topic(name string) *topic {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil {
		return t
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topicLocked(name)
}

// topicLocked is topic with b.mu held for writing.
func (b *Broker) topicLocked(name string) *topic {
	if t := b.topics[name]; t != nil {
		return t
	}
	t := &topic{b: b, name: name, byName: make(map[string]*group)}
	groups := []*group{newGroup(t, "", true)}
	t.groups.Store(&groups)
	b.topics[name] = t
	return t
}

// declare returns the group named name, creating it. The first group of
// the topic takes over the implicit backlog.
func (t *topic) declare(name string) *group {
	t.mu.Lock()
	defer t.mu.Unlock()
	if g := t.byName[name]; g != nil {
		return g
	}
	groups := *t.groups.Load()
	if len(t.byName) == 0 {
		// groups is the implicit backlog alone: it becomes this group, so
		// that publishers holding it keep feeding the right queue.
		g := groups[0]
		g.mu.Lock()
		g.name, g.implicit = name, false
		g.mu.Unlock()
		t.byName[name] = g
		return g
	}
	g := newGroup(t, name, false)
	next := make([]*group, len(groups), len(groups)+1)
	copy(next, groups)
	next = append(next, g)
	t.groups.Store(&next)
	t.byName[name] = g
	return g
}

// takeRedelivery consumes one unit of the RedeliverAfterAck budget.
func (t *topic) takeRedelivery() bool {
	for {
		n := t.redeliver.Load()
		if n <= 0 {
			return false
		}
		if t.redeliver.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// Publish puts a copy of each message in the queue of every consumer group
// of topic, or in the topic's implicit backlog when it has no group yet.
//
// When a group's queue is full, Publish waits for room until the broker is
// closed or the message's context is done (policy [Block]), or returns
// [ErrQueueFull] ([Reject]); [Broker.PublishContext] waits at most until its
// context ends. The implicit backlog is unbounded unless
// [Config.BacklogSize] is set. Messages are handled in order and Publish
// stops at the first error; groups and messages before it have their
// copies. A message over [Config.MaxMessageSize] fails the whole call before
// anything is queued, with an error wrapping [broker.ErrMessageTooLarge].
// After Close it returns [broker.ErrClosed].
func (b *Broker) Publish(topic string, msgs ...*message.Message) error {
	return b.publish(context.Background(), true, topic, msgs)
}

// PublishContext is [Broker.Publish] waiting for room in a full queue at
// most until ctx ends, then returning an error wrapping ctx.Err(). The
// messages' own contexts are not consulted. Messages and groups before the
// one that failed have their copies.
func (b *Broker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: publish to topic %q: %w", topic, err)
	}
	return b.publish(ctx, false, topic, msgs)
}

// MaxMessageSize returns [Config.MaxMessageSize]: 0 when messages of any
// size are accepted.
func (b *Broker) MaxMessageSize() int { return b.cfg.MaxMessageSize }

// checkSize returns an error wrapping broker.ErrMessageTooLarge for the
// first message of msgs over Config.MaxMessageSize.
func (b *Broker) checkSize(topic string, msgs []*message.Message) error {
	limit := b.cfg.MaxMessageSize
	if limit == 0 {
		return nil
	}
	for _, m := range msgs {
		if n := broker.MessageSize(m); n > limit {
			return fmt.Errorf("memory: publish message %s to topic %q: %d bytes with its metadata, the limit is %d: %w",
				m.UUID, topic, n, limit, broker.ErrMessageTooLarge)
		}
	}
	return nil
}

// publish is Publish when perMessage is set (each message's context bounds
// its wait for room), PublishContext otherwise (ctx does).
func (b *Broker) publish(ctx context.Context, perMessage bool, topic string, msgs []*message.Message) error {
	if b.closed.Load() {
		return fmt.Errorf("memory: publish to topic %q: %w", topic, broker.ErrClosed)
	}
	if err := b.checkSize(topic, msgs); err != nil {
		return err
	}
	t := b.topic(topic)
	groups := *t.groups.Load()
	for _, m := range msgs {
		wait := ctx
		if perMessage {
			wait = m.Context()
		}
		for _, g := range groups {
			if err := g.push(wait, m.Copy()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Subscribe joins the default consumer group of topic, named after the
// topic, with Prefetch 1. See [Broker.SubscribeGroup].
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return b.SubscribeGroup(ctx, topic, broker.Group{})
}

// SubscribeGroup joins the consumer group g.Name of topic (the topic's
// default group when empty), creating the group if needed. Up to g.Prefetch
// (default 1) messages are delivered and not yet acked at once.
//
// Cancelling ctx stops new deliveries; the channel is closed once every
// delivered message is acked or nacked. Each message's context is a child
// of ctx, cancelled once it is acked or nacked.
func (b *Broker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if g.Prefetch < 0 {
		return nil, fmt.Errorf("memory: subscribe to topic %q: Group.Prefetch is %d: set a positive number, or 0 for 1", topic, g.Prefetch)
	}
	prefetch := max(g.Prefetch, 1)
	name := broker.GroupName(topic, g.Name)

	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil, fmt.Errorf("memory: subscribe to topic %q: %w", topic, broker.ErrClosed)
	}
	t := b.topicLocked(topic)
	b.wg.Add(prefetch)
	b.mu.Unlock()

	grp := t.declare(name)
	grp.mu.Lock()
	grp.subscribers++
	grp.mu.Unlock()
	b.changed()

	s := &subscription{g: grp, ctx: ctx, out: make(chan *message.Message), live: prefetch}
	for range prefetch {
		go s.deliver()
	}
	return s.out, nil
}

// Declare creates the consumer groups of topic (its default group when
// groups is empty), so that messages published before anyone subscribes
// are kept for them. Declaring an existing group does nothing.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: declare topic %q: %w", topic, err)
	}
	if b.closed.Load() {
		return fmt.Errorf("memory: declare topic %q: %w", topic, broker.ErrClosed)
	}
	t := b.topic(topic)
	if len(groups) == 0 {
		groups = []string{""}
	}
	for _, g := range groups {
		t.declare(broker.GroupName(topic, g))
	}
	b.changed()
	return nil
}

// Close stops every subscription and the delayed deliveries, puts unacked
// messages back in their queues, closes every subscription channel and
// returns once all the broker's goroutines have stopped. Delayed messages
// not yet due are dropped. Close is safe to call more than once; later
// calls return nil at once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return nil
	}
	b.closed.Store(true)
	close(b.closing)
	b.mu.Unlock()

	b.wg.Wait()
	b.delay.drop()
	b.changed()
	b.cfg.Logger.Debug("memory: broker closed")
	return nil
}

// changed wakes WaitIdle callers, if any.
func (b *Broker) changed() {
	if b.watchers.Load() == 0 {
		return
	}
	b.imu.Lock()
	close(b.changedC)
	b.changedC = make(chan struct{})
	b.imu.Unlock()
}
