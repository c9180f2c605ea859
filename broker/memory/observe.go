package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/harvesthub/hub/broker"
)

// Stats is a snapshot of the broker's queues, from [Broker.Stats].
type Stats struct {
	// Groups has one entry per consumer group, sorted by topic then group,
	// plus one with Implicit set per topic whose implicit backlog (messages
	// published before the topic had a group) is not empty.
	Groups []GroupStats
	// Delayed counts delayed messages not yet in their queues.
	Delayed int
}

// GroupStats describes one consumer group's queue.
type GroupStats struct {
	Topic string
	// Group is the group's name; empty for an implicit backlog.
	Group string
	// Implicit is true for a topic's implicit backlog.
	Implicit bool
	// Queued counts messages waiting to be delivered.
	Queued int
	// Unacked counts messages taken for delivery and not yet acked or
	// nacked.
	Unacked int
	// Subscribers counts the group's open subscriptions.
	Subscribers int
	// Waiting counts publishers waiting for room (policy [Block]).
	Waiting int
}

// Idle reports whether no message is queued in a consumer group, unacked or
// delayed; implicit backlogs do not count. See [Broker.WaitIdle].
func (s Stats) Idle() bool {
	if s.Delayed > 0 {
		return false
	}
	for _, g := range s.Groups {
		if g.Unacked > 0 || (!g.Implicit && g.Queued > 0) {
			return false
		}
	}
	return true
}

// Group returns the stats of group (the topic's default group when empty)
// of topic, or zero GroupStats with only Topic and Group set when the group
// does not exist.
func (s Stats) Group(topic, group string) GroupStats {
	group = broker.GroupName(topic, group)
	for _, g := range s.Groups {
		if g.Topic == topic && g.Group == group && !g.Implicit {
			return g
		}
	}
	return GroupStats{Topic: topic, Group: group}
}

// Stats returns a snapshot of every queue. It is meant for tests and
// operators; it locks each queue briefly.
func (b *Broker) Stats() Stats {
	var s Stats
	b.forEachGroup(func(t *topic, g *group) {
		if g.implicit && g.q.len() == 0 {
			return
		}
		s.Groups = append(s.Groups, GroupStats{
			Topic:       t.name,
			Group:       g.name,
			Implicit:    g.implicit,
			Queued:      g.q.len(),
			Unacked:     g.unacked,
			Subscribers: g.subscribers,
			Waiting:     g.blocked,
		})
	})
	slices.SortFunc(s.Groups, func(x, y GroupStats) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Group, y.Group))
	})
	b.delay.mu.Lock()
	s.Delayed = b.delay.pending
	b.delay.mu.Unlock()
	return s
}

// forEachGroup calls f for every group with g.mu held.
func (b *Broker) forEachGroup(f func(*topic, *group)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, t := range b.topics {
		for _, g := range *t.groups.Load() {
			g.mu.Lock()
			f(t, g)
			g.mu.Unlock()
		}
	}
}

// WaitIdle returns nil once no message is queued in any consumer group, none
// is delivered and unacked, and no delayed message is pending
// ([Stats.Idle]). Implicit backlogs (topics nobody declared or subscribed
// to, such as a dead-letter topic) do not count. It waits for state
// changes, never polls, and returns ctx's error, wrapped, when ctx is done
// first, or [broker.ErrClosed] once the broker is closed.
func (b *Broker) WaitIdle(ctx context.Context) error {
	if err := b.WaitStats(ctx, Stats.Idle); err != nil {
		return fmt.Errorf("memory: wait idle: %w", err)
	}
	return nil
}

// WaitStats is a test hook: it returns nil once cond holds for the
// broker's [Stats], checking again on every change of the broker's state
// (a message queued, taken, acked, nacked or delayed, a publisher waiting,
// a subscription opened or closed), never polling. It returns ctx's error
// when ctx is done first, or [broker.ErrClosed] once the broker is closed.
func (b *Broker) WaitStats(ctx context.Context, cond func(Stats) bool) error {
	b.watchers.Add(1)
	defer b.watchers.Add(-1)
	for {
		b.imu.Lock()
		changed := b.changedC
		b.imu.Unlock()
		if b.closed.Load() {
			return broker.ErrClosed
		}
		if cond(b.Stats()) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RedeliverAfterAck is a test hook (fault injection): the next n messages
// acked on topic, in any of its groups, are delivered again after their
// ack, as a real broker does when an ack is lost. The redelivered copy has
// its delivery count incremented. Calls add up; n <= 0 does nothing.
func (b *Broker) RedeliverAfterAck(topic string, n int) {
	if n <= 0 {
		return
	}
	b.topic(topic).redeliver.Add(int64(n))
	b.cfg.Logger.Debug("memory: fault injection: redeliver after ack", "topic", topic, "n", n)
}
