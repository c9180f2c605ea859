package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
)

// keyDeliveryCount is hub.KeyDeliveryCount (metadata.go): the delivery
// number of a message delivered again, 2 on the first redelivery.
const keyDeliveryCount = "hub-delivery-count"

// group is one consumer group's queue, or a topic's implicit backlog
// (implicit true, name empty) until the first group takes it over.
type group struct {
	t *topic

	mu          sync.Mutex
	name        string
	implicit    bool
	q           ring
	unacked     int // taken from q and not yet acked, nacked or put back
	subscribers int
	idle        int // deliverers waiting on ready
	blocked     int // publishers waiting on space

	ready chan struct{} // cap 1: a message was queued and a deliverer waits
	space chan struct{} // cap 1: a message was taken and a publisher waits
}

func newGroup(t *topic, name string, implicit bool) *group {
	return &group{
		t:        t,
		name:     name,
		implicit: implicit,
		ready:    make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// full reports whether the queue has no room for one more published
// message; g.mu must be held. An implicit backlog is bounded by
// Config.BacklogSize (0: never full), a group's queue by Config.QueueSize.
func (g *group) full() bool {
	cfg := &g.t.b.cfg
	if g.implicit {
		return cfg.BacklogSize > 0 && g.q.len() >= cfg.BacklogSize
	}
	return g.q.len() >= cfg.QueueSize
}

// push queues m at the back, waiting for room under the Block policy until
// ctx is done or the broker is closed.
func (g *group) push(ctx context.Context, m *message.Message) error {
	b := g.t.b
	g.mu.Lock()
	for g.full() {
		if b.cfg.Full == Reject {
			name := g.displayName()
			g.mu.Unlock()
			return fmt.Errorf("memory: publish to topic %q group %q: %w", g.t.name, name, ErrQueueFull)
		}
		g.blocked++
		g.mu.Unlock()
		b.changed()
		var err error
		select {
		case <-g.space:
		case <-b.closing:
			err = fmt.Errorf("memory: publish to topic %q: %w", g.t.name, broker.ErrClosed)
		case <-ctx.Done():
			err = fmt.Errorf("memory: publish to topic %q: waiting for room: %w", g.t.name, ctx.Err())
		}
		g.mu.Lock()
		g.blocked--
		if err != nil {
			// Pass on a wake-up this publisher may have swallowed.
			more := g.blocked > 0 && !g.full()
			g.mu.Unlock()
			if more {
				signal(g.space)
			}
			b.changed()
			return err
		}
	}
	g.q.pushBack(m)
	wake := g.idle > 0
	more := g.blocked > 0 && !g.full()
	g.mu.Unlock()
	if wake {
		signal(g.ready)
	}
	if more {
		signal(g.space)
	}
	b.changed()
	return nil
}

// putBack queues m ignoring the bound: at the front for a message coming
// back (nack, cancel, close), at the back for a delayed one falling due.
// When wasUnacked, m (or the message it replaces) counted as unacked.
func (g *group) putBack(m *message.Message, front, wasUnacked bool) {
	g.mu.Lock()
	if front {
		g.q.pushFront(m)
	} else {
		g.q.pushBack(m)
	}
	if wasUnacked {
		g.unacked--
	}
	wake := g.idle > 0
	g.mu.Unlock()
	if wake {
		signal(g.ready)
	}
	g.t.b.changed()
}

// take removes the message at the head of the queue, waiting for one until
// ctx is done or the broker is closed (then it returns nil).
func (g *group) take(ctx context.Context) *message.Message {
	closing := g.t.b.closing
	select {
	case <-ctx.Done():
		return nil // cancelled: no new delivery even if one is queued
	default:
	}
	g.mu.Lock()
	for g.q.len() == 0 {
		g.idle++
		g.mu.Unlock()
		stop := false
		select {
		case <-g.ready:
		case <-ctx.Done():
			stop = true
		case <-closing:
			stop = true
		}
		g.mu.Lock()
		g.idle--
		if stop {
			// Pass on a wake-up this deliverer may have swallowed.
			more := g.idle > 0 && g.q.len() > 0
			g.mu.Unlock()
			if more {
				signal(g.ready)
			}
			return nil
		}
	}
	m := g.q.popFront()
	g.unacked++
	more := g.idle > 0 && g.q.len() > 0
	room := g.blocked > 0
	g.mu.Unlock()
	if more {
		signal(g.ready)
	}
	if room {
		signal(g.space)
	}
	g.t.b.changed()
	return m
}

// acked records the ack of m, which the fault injection of
// [Broker.RedeliverAfterAck] may turn into a redelivery.
func (g *group) acked(m *message.Message) {
	if g.t.takeRedelivery() {
		g.t.b.cfg.Logger.Debug("memory: redelivering an acked message (RedeliverAfterAck)",
			"topic", g.t.name, "message_uuid", m.UUID)
		g.putBack(redelivery(m), true, true)
		return
	}
	g.mu.Lock()
	g.unacked--
	g.mu.Unlock()
	g.t.b.changed()
}

// displayName is the group's name for errors and stats; g.mu must be held.
func (g *group) displayName() string {
	if g.implicit {
		return "(backlog)"
	}
	return g.name
}

// redelivery returns a fresh copy of m, to deliver again, with its delivery
// count incremented.
func redelivery(m *message.Message) *message.Message {
	c := m.Copy()
	n, err := strconv.Atoi(m.Metadata.Get(keyDeliveryCount))
	if err != nil || n < 1 {
		n = 1
	}
	c.Metadata.Set(keyDeliveryCount, strconv.Itoa(n+1))
	return c
}

// subscription is one SubscribeGroup call: prefetch deliverer goroutines
// sharing out.
type subscription struct {
	g    *group
	ctx  context.Context
	out  chan *message.Message
	mu   sync.Mutex
	live int // deliverers still running
}

// deliver is one of the subscription's deliverers: it holds at most one
// delivered message at a time and waits for its ack or nack.
func (s *subscription) deliver() {
	b := s.g.t.b
	defer b.wg.Done()
	defer s.exit()
	for {
		m := s.g.take(s.ctx)
		if m == nil {
			return
		}
		ctx, cancel := context.WithCancel(s.ctx)
		m.SetContext(ctx)
		select {
		case s.out <- m:
		case <-s.ctx.Done():
			cancel()
			s.g.putBack(m, true, true) // never handed over: same message
			return
		case <-b.closing:
			cancel()
			s.g.putBack(m, true, true)
			return
		}
		select {
		case <-m.Acked():
			cancel()
			s.g.acked(m)
		case <-m.Nacked():
			cancel()
			s.g.putBack(redelivery(m), true, true)
		case <-b.closing:
			cancel()
			select {
			case <-m.Acked():
				s.g.acked(m)
			default:
				s.g.putBack(redelivery(m), true, true)
			}
			return
		}
	}
}

// exit closes the channel when the last deliverer stops.
func (s *subscription) exit() {
	s.mu.Lock()
	s.live--
	last := s.live == 0
	s.mu.Unlock()
	if !last {
		return
	}
	s.g.mu.Lock()
	s.g.subscribers--
	s.g.mu.Unlock()
	close(s.out)
	s.g.t.b.changed()
}
