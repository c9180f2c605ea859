package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
)

// Fan-out: each hub topic is an SNS topic; each consumer group is an SQS
// queue subscribed to it with raw message delivery. The subscriptions live
// in SNS, so a group declared by any process receives what any other process
// publishes from then on. Results are cached per Broker: a queue or topic
// deleted behind the broker's back is not recreated until a new Broker.

// topicARN creates (idempotently) the SNS topic of topic and returns its ARN.
func (b *Broker) topicARN(ctx context.Context, topic string) (string, error) {
	name, err := queueName(b.cfg.QueuePrefix, topic, "")
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	arn, ok := b.topics[topic]
	b.mu.Unlock()
	if ok {
		return arn, nil
	}
	out, err := b.sns.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		return "", b.opError("create the SNS topic of", topic, err)
	}
	arn = aws.ToString(out.TopicArn)
	b.mu.Lock()
	b.topics[topic] = arn
	b.mu.Unlock()
	return arn, nil
}

// groupQueue creates (idempotently) the queue of group of topic, subscribes
// it to the topic's SNS topic and returns its URL.
func (b *Broker) groupQueue(ctx context.Context, topic, group string) (string, error) {
	name, err := queueName(b.cfg.QueuePrefix, topic, group)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	url, ok := b.queues[name]
	b.mu.Unlock()
	if ok {
		return url, nil
	}
	topicARN, err := b.topicARN(ctx, topic)
	if err != nil {
		return "", err
	}
	attrs, err := wmsqs.QueueConfigAttributes{
		VisibilityTimeout: strconv.Itoa(int(b.cfg.VisibilityTimeout.Seconds())),
	}.Attributes()
	if err != nil {
		return "", fmt.Errorf("sqs: queue attributes: %w", err)
	}
	out, err := b.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	var exists *types.QueueNameExists
	switch {
	case errors.As(err, &exists):
		// Created by a broker with other settings: use it as it is.
		got, gerr := b.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if gerr != nil {
			return "", b.opError("find queue "+name+" of", topic, gerr)
		}
		url = aws.ToString(got.QueueUrl)
	case err != nil:
		return "", b.opError("create queue "+name+" of", topic, err)
	default:
		url = aws.ToString(out.QueueUrl)
	}
	qa, err := b.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", b.opError("read queue "+name+" of", topic, err)
	}
	queueARN := qa.Attributes[string(types.QueueAttributeNameQueueArn)]
	// Let the topic send to the queue (AWS checks this; emulators ignore it).
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},`+
		`"Action":"sqs:SendMessage","Resource":%q,"Condition":{"ArnEquals":{"aws:SourceArn":%q}}}]}`, queueARN, topicARN)
	if _, err := b.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
		QueueUrl: aws.String(url), Attributes: map[string]string{string(types.QueueAttributeNamePolicy): policy},
	}); err != nil {
		return "", b.opError("set the policy of queue "+name+" of", topic, err)
	}
	if _, err := b.sns.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn:              aws.String(topicARN),
		Protocol:              aws.String("sqs"),
		Endpoint:              aws.String(queueARN),
		Attributes:            map[string]string{"RawMessageDelivery": "true"},
		ReturnSubscriptionArn: true,
	}); err != nil {
		return "", b.opError("subscribe queue "+name+" to", topic, err)
	}
	b.mu.Lock()
	b.queues[name] = url
	b.urls[queueARN] = url
	b.mu.Unlock()
	return url, nil
}

// subscribedQueues returns the URLs of the queues of every group of topic:
// the queues subscribed to its SNS topic, asked from SNS each time so that
// groups declared by other processes are included.
func (b *Broker) subscribedQueues(ctx context.Context, topic string) ([]string, error) {
	if _, err := b.groupQueue(ctx, topic, ""); err != nil {
		return nil, err
	}
	arn, err := b.topicARN(ctx, topic)
	if err != nil {
		return nil, err
	}
	var urls []string
	p := sns.NewListSubscriptionsByTopicPaginator(b.sns, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(arn)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, b.opError("list the groups of", topic, err)
		}
		for _, s := range page.Subscriptions {
			if aws.ToString(s.Protocol) != "sqs" {
				continue
			}
			u, err := b.queueURL(ctx, aws.ToString(s.Endpoint))
			if err != nil {
				return nil, b.opError("find a group queue of", topic, err)
			}
			urls = append(urls, u)
		}
	}
	return urls, nil
}

// queueURL returns the URL of the queue with ARN arn
// (arn:aws:sqs:<region>:<account>:<name>).
func (b *Broker) queueURL(ctx context.Context, arn string) (string, error) {
	b.mu.Lock()
	u, ok := b.urls[arn]
	b.mu.Unlock()
	if ok {
		return u, nil
	}
	parts := strings.Split(arn, ":")
	if len(parts) != 6 {
		return "", fmt.Errorf("queue ARN %q is malformed", arn)
	}
	out, err := b.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(parts[5]), QueueOwnerAWSAccountId: aws.String(parts[4])})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", arn, err)
	}
	u = aws.ToString(out.QueueUrl)
	b.mu.Lock()
	b.urls[arn] = u
	b.mu.Unlock()
	return u, nil
}
