package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/harvesthub/hub/broker"
)

// Queues reports the consumer groups of topic, or of every topic the
// adapter created a stream for (streams named with Config.StreamPrefix)
// when topic is empty. Depth counts every message the group has not acked:
// those not yet delivered (including messages addressed to other groups
// and delayed messages not yet due) and those delivered and not acked.
// JetStream counts a nacked message waiting for its redelivery as
// delivered and unacked, so in-flight messages cannot be told apart from
// waiting ones: InFlight is -1. Consumers is the pull requests waiting on
// the group (each idle subscription keeps one); OldestAge the age of the
// group's oldest unacked message.
func (b *Broker) Queues(ctx context.Context, topic string) ([]broker.QueueStats, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	if topic != "" {
		s, err := b.js.Stream(ctx, b.names(topic).stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("nats: topic %s has no stream %s: %w", topic, b.names(topic).stream, broker.ErrUnknownTopic)
		}
		if err != nil {
			return nil, b.opError("inspect", topic, err)
		}
		return b.streamQueues(ctx, topic, s)
	}
	var out []broker.QueueStats
	names := b.js.StreamNames(ctx)
	for name := range names.Name() {
		if !strings.HasPrefix(name, b.cfg.StreamPrefix) {
			continue
		}
		s, err := b.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("nats: inspect stream %s: %w", name, err)
		}
		t, ok := strings.CutPrefix(s.CachedInfo().Config.Description, streamMarker)
		if !ok {
			continue // not the adapter's
		}
		qs, err := b.streamQueues(ctx, t, s)
		if err != nil {
			return nil, err
		}
		out = append(out, qs...)
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("nats: list streams: %w", err)
	}
	return out, nil
}

func (b *Broker) streamQueues(ctx context.Context, topic string, s jetstream.Stream) ([]broker.QueueStats, error) {
	var out []broker.QueueStats
	list := s.ListConsumers(ctx)
	for ci := range list.Info() {
		group, ok := strings.CutPrefix(ci.Config.Description, consumerMarker)
		if !ok {
			group = ci.Name
		}
		q := broker.QueueStats{
			Topic:     topic,
			Group:     group,
			Queue:     ci.Stream + "/" + ci.Name,
			Depth:     int64(ci.NumPending) + int64(ci.NumAckPending),
			InFlight:  -1,
			Consumers: ci.NumWaiting,
		}
		if q.Depth > 0 {
			q.OldestAge = b.oldestAge(ctx, s, ci.AckFloor.Stream+1)
		}
		out = append(out, q)
	}
	if err := list.Err(); err != nil {
		return nil, b.opError("inspect", topic, err)
	}
	return out, nil
}

// oldestAge is the age of the first message at or after seq still in s;
// 0 when it cannot be read.
func (b *Broker) oldestAge(ctx context.Context, s jetstream.Stream, seq uint64) time.Duration {
	first := s.CachedInfo().State.FirstSeq
	seq = max(seq, first)
	// A few tries: messages acked by every group are deleted as we look.
	for range 3 {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			return max(time.Since(m.Time), 0)
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0
		}
		seq++
	}
	return 0
}
