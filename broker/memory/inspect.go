package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/harvesthub/hub/broker"
)

var _ broker.Inspector = (*Broker)(nil)

// backlogQueue is the Queue name QueueStats gives a topic's implicit
// backlog (messages published before the topic had a group).
const backlogQueue = "(backlog)"

// Queues reports the consumer groups of topic name, or of every topic when
// name is empty: Depth counts queued messages, InFlight delivered and unacked
// ones, Consumers open subscriptions. A topic that has no group yet but was
// published to reports its implicit backlog as one queue with an empty
// Group and Queue "(backlog)". A topic the broker has never seen returns an
// error wrapping [broker.ErrUnknownTopic]; nothing is created.
func (b *Broker) Queues(ctx context.Context, name string) ([]broker.QueueStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: queues: %w", err)
	}
	if b.closed.Load() {
		return nil, fmt.Errorf("memory: queues: %w", broker.ErrClosed)
	}
	b.mu.RLock()
	var topics []*topic
	if name != "" {
		if t := b.topics[name]; t != nil {
			topics = append(topics, t)
		}
	} else {
		for _, t := range b.topics {
			topics = append(topics, t)
		}
	}
	b.mu.RUnlock()
	if name != "" && len(topics) == 0 {
		return nil, fmt.Errorf("memory: topic %q: %w", name, broker.ErrUnknownTopic)
	}
	var out []broker.QueueStats
	for _, t := range topics {
		for _, g := range *t.groups.Load() {
			g.mu.Lock()
			s := broker.QueueStats{
				Topic:     t.name,
				Group:     g.name,
				Queue:     g.name,
				Depth:     int64(g.q.len()),
				InFlight:  int64(g.unacked),
				Consumers: g.subscribers,
			}
			if g.implicit {
				s.Queue = backlogQueue
			}
			g.mu.Unlock()
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(x, y broker.QueueStats) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Group, y.Group))
	})
	return out, nil
}
