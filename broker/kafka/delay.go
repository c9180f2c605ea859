package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/harvesthub/hub/broker"
)

// A delayed message waits in a retry topic of its tier, "<topic>.retry.<tier>"
// (tiers are fixed so that every subscriber knows every retry topic from
// the start). The records of one tier carry their due time; a subscription
// consumes its topic's retry topics in its own consumer group, pauses a
// retry partition whose next record is not due, and delivers the record
// when it is: memory holds at most the records one poll returned per
// partition, and no commit passes a record not yet delivered and acked.
//
// A delay goes to the smallest tier not shorter than it, and is honoured
// to the millisecond; as records of one partition are delivered in order, a
// record behind a longer delay of the same tier may wait up to the
// difference between the tier and the previous one longer than it asked.
var tiers = []struct {
	d    time.Duration
	name string
}{
	{time.Second, "1s"},
	{5 * time.Second, "5s"},
	{30 * time.Second, "30s"},
	{2 * time.Minute, "2m"},
	{10 * time.Minute, "10m"},
	{time.Hour, "1h"},
	{6 * time.Hour, "6h"},
	{MaxDelay, "24h"},
}

// MaxDelay is the longest delay PublishDelayed accepts.
const MaxDelay = 24 * time.Hour

const maxTierLen = 3

// retryTopic returns the retry topic of topic that holds delay.
func retryTopic(topic string, delay time.Duration) (string, bool) {
	for _, t := range tiers {
		if delay <= t.d {
			return topic + ".retry." + t.name, true
		}
	}
	return "", false
}

// allTopics returns topic and its retry topics: what a subscription
// consumes.
func allTopics(topic string) []string {
	ts := make([]string, 0, len(tiers)+1)
	ts = append(ts, topic)
	for _, t := range tiers {
		ts = append(ts, topic+".retry."+t.name)
	}
	return ts
}

// PublishDelayed publishes msgs so that they reach topic's subscribers
// once delay has passed: only group's subscribers when group is not empty
// (the others commit past them unseen), every group otherwise. The
// messages wait in a retry topic (see the package documentation), so a
// pending retry survives a restart of every process. A delay of zero or
// less publishes at once; one over MaxDelay is an error.
func (b *Broker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if delay > MaxDelay {
		return fmt.Errorf("kafka: delay %v exceeds MaxDelay %v", delay, MaxDelay)
	}
	target := topic
	var extra []kgo.RecordHeader
	if group != "" {
		extra = append(extra, kgo.RecordHeader{Key: keyTargetGroup, Value: []byte(group)})
	}
	if delay > 0 {
		target, _ = retryTopic(topic, delay)
		at := time.Now().Add(delay)
		due := at.UnixMilli()
		if time.UnixMilli(due).Before(at) {
			due++ // never early
		}
		extra = append(extra, kgo.RecordHeader{Key: headerDue, Value: []byte(strconv.FormatInt(due, 10))})
	}
	recs, err := b.records(target, withoutTarget(msgs, group), extra)
	if err != nil {
		return err
	}
	if err := b.ensureTopics(ctx, target); err != nil {
		return err
	}
	return b.produce(ctx, target, recs)
}

// withoutTarget drops a hub-target-group the caller set, when the group
// argument sets it: one header, not two.
func withoutTarget(msgs []*message.Message, group string) []*message.Message {
	if group == "" {
		return msgs
	}
	out := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		if _, ok := m.Metadata[keyTargetGroup]; !ok {
			out[i] = m
			continue
		}
		c := m.Copy()
		delete(c.Metadata, keyTargetGroup)
		out[i] = c
	}
	return out
}
