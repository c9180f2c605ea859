package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/harvesthub/hub/broker"
)

// Queues reports the consumer groups of topic (of every hub topic when
// topic is empty): Depth is the group's lag on the topic (records not yet
// committed, retry topics not counted), Consumers the members of the
// group, InFlight -1 (Kafka does not know what a member holds unacked).
// Queue is the Kafka consumer group. A topic that does not exist returns an
// error wrapping broker.ErrUnknownTopic; one without a group returns no
// stats.
func (b *Broker) Queues(ctx context.Context, topic string) ([]broker.QueueStats, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	if topic != "" {
		if err := validTopic(topic); err != nil {
			return nil, err
		}
		// A direct metadata request: kadm's is answered from a cache that
		// may predate the topic.
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, b.pub)
		if err != nil {
			return nil, fmt.Errorf("kafka: topic %s: %w", topic, b.unreachable(err))
		}
		if len(resp.Topics) != 1 {
			return nil, fmt.Errorf("kafka: topic %s: metadata answered %d topics", topic, len(resp.Topics))
		}
		if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("kafka: topic %s: %w", topic, broker.ErrUnknownTopic)
		} else if err != nil {
			return nil, fmt.Errorf("kafka: topic %s: %w", topic, err)
		}
	}
	listed, err := b.adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka: list groups: %w", b.unreachable(err))
	}
	var ids []string
	for _, id := range listed.Groups() {
		t, _, ok := strings.Cut(id, "~")
		if ok && (topic == "" || t == topic) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	lags, err := b.adm.Lag(ctx, ids...)
	if err != nil {
		return nil, fmt.Errorf("kafka: group lag: %w", b.unreachable(err))
	}
	stats := make([]broker.QueueStats, 0, len(ids))
	for _, id := range ids {
		l, ok := lags[id]
		if !ok {
			continue
		}
		if err := l.Error(); err != nil {
			return nil, fmt.Errorf("kafka: group %s: %w", id, err)
		}
		t, g, _ := strings.Cut(id, "~")
		st := broker.QueueStats{Topic: t, Group: g, Queue: id, InFlight: -1, Consumers: len(l.Members)}
		for _, pl := range l.Lag[t] {
			if pl.Err != nil {
				return nil, fmt.Errorf("kafka: group %s lag on %s/%d: %w", id, t, pl.Partition, pl.Err)
			}
			st.Depth += pl.Lag
		}
		stats = append(stats, st)
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].Queue < stats[j].Queue })
	return stats, nil
}
