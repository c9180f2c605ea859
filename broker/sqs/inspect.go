package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/harvesthub/hub/broker"
)

var _ broker.Inspector = (*Broker)(nil)

// Queues reports the queues of every consumer group of topic: the topic's
// default queue and every SQS queue subscribed to its SNS topic. Depth is
// ApproximateNumberOfMessages, InFlight ApproximateNumberOfMessagesNotVisible
// (received and not yet deleted), Consumers -1 (SQS does not know its
// consumers). Group is the group's name as far as the queue name tells it
// ('.' reads as '_'). A topic without its default queue returns an error
// wrapping [broker.ErrUnknownTopic]. Nothing is created: it only calls
// GetQueueUrl, GetQueueAttributes, GetTopicAttributes and
// ListSubscriptionsByTopic.
//
// An empty topic lists every queue whose name starts with
// Config.QueuePrefix; Topic and Group are then empty.
func (b *Broker) Queues(ctx context.Context, topic string) ([]broker.QueueStats, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	if topic == "" {
		return b.allQueues(ctx)
	}
	name, err := queueName(b.cfg.QueuePrefix, topic, "")
	if err != nil {
		return nil, err
	}
	got, err := b.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		var missing *types.QueueDoesNotExist
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("sqs: queue %s of topic %q: %w", name, topic, broker.ErrUnknownTopic)
		}
		return nil, b.opError("inspect", topic, err)
	}
	def, arn, err := b.queueStats(ctx, aws.ToString(got.QueueUrl))
	if err != nil {
		return nil, b.opError("inspect", topic, err)
	}
	def.Topic, def.Group = topic, topic
	out := []broker.QueueStats{def}

	// The SNS topic has the default queue's name, in the same region and
	// account: its ARN is the queue's with the service changed.
	topicARN := strings.Replace(arn, ":sqs:", ":sns:", 1)
	if _, err := b.sns.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(topicARN)}); err != nil {
		var nf *snstypes.NotFoundException
		if errors.As(err, &nf) {
			return out, nil // a queue without fan-out: the default group only
		}
		return nil, b.opError("inspect", topic, err)
	}
	p := sns.NewListSubscriptionsByTopicPaginator(b.sns, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, b.opError("list the groups of", topic, err)
		}
		for _, s := range page.Subscriptions {
			qarn := aws.ToString(s.Endpoint)
			if aws.ToString(s.Protocol) != "sqs" || qarn == arn {
				continue
			}
			u, err := b.queueURL(ctx, qarn)
			if err != nil {
				return nil, b.opError("find a group queue of", topic, err)
			}
			st, _, err := b.queueStats(ctx, u)
			if err != nil {
				return nil, b.opError("inspect", topic, err)
			}
			st.Topic, st.Group = topic, groupOf(b.cfg.QueuePrefix, topic, st.Queue)
			out = append(out, st)
		}
	}
	return out, nil
}

// allQueues reports every queue with the broker's prefix.
func (b *Broker) allQueues(ctx context.Context) ([]broker.QueueStats, error) {
	var out []broker.QueueStats
	in := &sqs.ListQueuesInput{MaxResults: aws.Int32(1000)}
	if b.cfg.QueuePrefix != "" {
		in.QueueNamePrefix = aws.String(b.cfg.QueuePrefix)
	}
	p := sqs.NewListQueuesPaginator(b.sqs, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("sqs: list queues at %s: %w", b.where(), err)
		}
		for _, u := range page.QueueUrls {
			st, _, err := b.queueStats(ctx, u)
			if err != nil {
				var missing *types.QueueDoesNotExist
				if errors.As(err, &missing) {
					continue // deleted since listed
				}
				return nil, fmt.Errorf("sqs: inspect %s: %w", u, err)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// queueStats reads the counters of the queue at url, and its ARN.
func (b *Broker) queueStats(ctx context.Context, url string) (broker.QueueStats, string, error) {
	out, err := b.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameQueueArn,
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return broker.QueueStats{}, "", err
	}
	a := out.Attributes
	arn := a[string(types.QueueAttributeNameQueueArn)]
	depth, _ := strconv.ParseInt(a[string(types.QueueAttributeNameApproximateNumberOfMessages)], 10, 64)
	inflight, _ := strconv.ParseInt(a[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], 10, 64)
	name := url[strings.LastIndex(url, "/")+1:]
	if i := strings.LastIndex(arn, ":"); i >= 0 {
		name = arn[i+1:]
	}
	return broker.QueueStats{Queue: name, Depth: depth, InFlight: inflight, Consumers: -1}, arn, nil
}

// groupOf recovers a group's name from its queue name
// "<prefix><topic>-<group>-<hash>" ('.' read as '_'); it returns the queue
// name when the name does not have that shape (a queue subscribed by
// someone else).
func groupOf(prefix, topic, queue string) string {
	head := prefix + mapName(topic) + "-"
	if !strings.HasPrefix(queue, head) || len(queue) < len(head)+10 || queue[len(queue)-9] != '-' {
		return queue
	}
	return queue[len(head) : len(queue)-9]
}
