package sqs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/harvesthub/hub/broker"
)

// Broker is the SQS adapter. Create it with [New]; it is safe for concurrent
// use.
type Broker struct {
	cfg Config
	sqs *sqs.Client
	sns *sns.Client

	// ctx is cancelled by Close; publishes and receives use it.
	ctx       context.Context
	cancel    context.CancelFunc
	subs      sync.WaitGroup
	transport *http.Transport

	mu     sync.Mutex
	closed bool
	topics map[string]string // hub topic -> SNS topic ARN
	queues map[string]string // queue name -> URL, created and subscribed
	urls   map[string]string // queue ARN -> URL
}

var (
	_ broker.Broker           = (*Broker)(nil)
	_ broker.Delayer          = (*Broker)(nil)
	_ broker.Declarer         = (*Broker)(nil)
	_ broker.ContextPublisher = (*Broker)(nil)
	_ broker.SizeLimiter      = (*Broker)(nil)
)

// New returns a Broker for cfg after checking that the endpoint answers
// (one ListQueues call within ctx).
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(cfg.Region)}
	if c := cfg.Credentials; c != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqs: load AWS configuration: %w", err)
	}
	// An HTTP client of our own (from the SDK's, with AWS_CA_BUNDLE and the
	// like applied) so that Close can drop its idle connections.
	var transport *http.Transport
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		transport = bc.GetTransport()
	} else {
		transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	transport.MaxIdleConnsPerHost = 64
	if cfg.TLS != nil {
		tlsCfg, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("sqs: TLS: %w", err)
		}
		transport.TLSClientConfig = tlsCfg
	}
	httpClient := &http.Client{Transport: bufferedBodies{transport}}
	var endpoint *string
	if cfg.Endpoint != "" {
		endpoint = aws.String(cfg.Endpoint)
	}
	bounded := requestTimeout(cfg.RequestTimeout, cfg.WaitTime)
	bctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg: cfg,
		sqs: sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
			o.BaseEndpoint, o.HTTPClient = endpoint, httpClient
			o.APIOptions = append(o.APIOptions, bounded)
		}),
		sns: sns.NewFromConfig(awsCfg, func(o *sns.Options) {
			o.BaseEndpoint, o.HTTPClient = endpoint, httpClient
			o.APIOptions = append(o.APIOptions, bounded)
		}),
		ctx:       bctx,
		cancel:    cancel,
		transport: transport,
		topics:    map[string]string{},
		queues:    map[string]string{},
		urls:      map[string]string{},
	}
	if err := b.Ping(ctx); err != nil {
		cancel()
		transport.CloseIdleConnections()
		return nil, err
	}
	return b, nil
}

// requestTimeout is an SDK option bounding each call, retries included, by
// d; ReceiveMessage gets its long-polling wait on top.
func requestTimeout(d, wait time.Duration) func(*middleware.Stack) error {
	mw := middleware.InitializeMiddlewareFunc("hubRequestTimeout", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		limit := d
		if middleware.GetOperationName(ctx) == "ReceiveMessage" {
			limit += wait
		}
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		return next.HandleInitialize(ctx, in)
	})
	return func(s *middleware.Stack) error { return s.Initialize.Add(mw, middleware.Before) }
}

// MaxMessageSize returns [MaxMessageSize], the limit SNS and SQS put on a
// message counted as they count it. The envelope this adapter sends (see
// [EnvelopeAttribute]) makes a message's size on the wire larger than
// [broker.MessageSize]: publishing is the exact check.
func (b *Broker) MaxMessageSize() int { return MaxMessageSize }

// Name returns "aws_sqs", the OpenTelemetry messaging.system value.
func (b *Broker) Name() string { return "aws_sqs" }

// Ping lists at most one queue: nil when the endpoint answers and accepts
// the credentials.
func (b *Broker) Ping(ctx context.Context) error {
	if _, err := b.sqs.ListQueues(ctx, &sqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		return fmt.Errorf("sqs: cannot reach SQS at %s (region %s): %w", b.where(), b.cfg.Region, err)
	}
	return nil
}

func (b *Broker) where() string {
	if b.cfg.Endpoint == "" {
		return "AWS"
	}
	return b.cfg.Endpoint
}

// Close stops every subscription and waits for their goroutines. Messages
// delivered and not yet acked are made visible again at once. Acks already
// given are deleted first. Close is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if !already {
		b.cancel()
	}
	b.subs.Wait()
	b.transport.CloseIdleConnections()
	return nil
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Publish sends msgs to every consumer group of topic through the topic's
// SNS topic (PublishBatch, 10 messages a call). The first publish to a topic
// creates the SNS topic and the default group's queue, so nothing published
// before the first subscriber is lost. Each call to SNS is bounded by
// Config.RequestTimeout. A message over [MaxMessageSize] fails the call with
// [ErrTooLarge] (wrapping [broker.ErrMessageTooLarge]) before anything is
// sent.
func (b *Broker) Publish(topic string, msgs ...*message.Message) error {
	return b.PublishContext(context.Background(), topic, msgs...)
}

// PublishContext is [Broker.Publish] returning, with an error wrapping
// ctx.Err(), once ctx ends. Batches sent before it ended stay published.
func (b *Broker) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	wire, err := encodeAll(msgs, time.Time{})
	if err != nil {
		return err
	}
	// Close ends a publish in progress too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	arn, err := b.topicARN(ctx, topic)
	if err != nil {
		return err
	}
	if _, err := b.groupQueue(ctx, topic, ""); err != nil {
		return err
	}
	for _, batch := range batches(wire) {
		entries := make([]snstypes.PublishBatchRequestEntry, len(batch))
		for i, w := range batch {
			entries[i] = snstypes.PublishBatchRequestEntry{
				Id:      aws.String(strconv.Itoa(i)),
				Message: aws.String(w.body),
				MessageAttributes: map[string]snstypes.MessageAttributeValue{
					EnvelopeAttribute: {DataType: aws.String(stringType), StringValue: aws.String(w.envelope)},
				},
			}
		}
		out, err := b.sns.PublishBatch(ctx, &sns.PublishBatchInput{TopicArn: aws.String(arn), PublishBatchRequestEntries: entries})
		if err != nil {
			return b.opError("publish to", topic, err)
		}
		if len(out.Failed) > 0 {
			return batchFailure("publish to topic "+topic, batch, snsFailures(out.Failed))
		}
		if len(out.Successful) != len(batch) {
			return fmt.Errorf("sqs: publish to topic %s: %d of %d messages accepted", topic, len(out.Successful), len(batch))
		}
	}
	return nil
}

// PublishDelayed sends msgs to topic with a delay: to group's queue only when
// group is set, otherwise to the queue of every group subscribed to the
// topic's SNS topic (the default group's queue is created if needed). SQS
// delays a message at most 15 minutes; a longer delay is sent in hops of up
// to 15 minutes, the remaining time carried in the message's envelope, and
// the subscriber sends it on until the time has come, without delivering it.
func (b *Broker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	first, notBefore := planDelay(time.Now(), delay)
	wire, err := encodeAll(msgs, notBefore)
	if err != nil {
		return err
	}
	var urls []string
	if group != "" {
		u, err := b.groupQueue(ctx, topic, group)
		if err != nil {
			return err
		}
		urls = []string{u}
	} else if urls, err = b.subscribedQueues(ctx, topic); err != nil {
		return err
	}
	for _, u := range urls {
		if err := b.send(ctx, u, first, wire); err != nil {
			return fmt.Errorf("sqs: delayed publish to topic %s: %w", topic, err)
		}
	}
	return nil
}

// Declare creates the queues of groups of topic and subscribes them to the
// topic, so that messages published from now on are kept for them. An empty
// group name or the topic's own name is the default group, which is always
// declared.
func (b *Broker) Declare(ctx context.Context, topic string, groups ...string) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if _, err := b.groupQueue(ctx, topic, ""); err != nil {
		return err
	}
	for _, g := range groups {
		if _, err := b.groupQueue(ctx, topic, g); err != nil {
			return err
		}
	}
	return nil
}

// send sends wire to the queue at url with SendMessageBatch.
func (b *Broker) send(ctx context.Context, url string, delay int32, wire []wireMessage) error {
	for _, batch := range batches(wire) {
		entries := make([]types.SendMessageBatchRequestEntry, len(batch))
		for i, w := range batch {
			entries[i] = types.SendMessageBatchRequestEntry{
				Id:                aws.String(strconv.Itoa(i)),
				MessageBody:       aws.String(w.body),
				DelaySeconds:      delay,
				MessageAttributes: w.attributes(),
			}
		}
		out, err := b.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return fmt.Errorf("send to %s: %w", url, err)
		}
		if len(out.Failed) > 0 {
			failed := map[string]string{}
			for _, f := range out.Failed {
				failed[aws.ToString(f.Id)] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
			}
			return batchFailure("send to "+url, batch, failed)
		}
	}
	return nil
}

func encodeAll(msgs []*message.Message, notBefore time.Time) ([]wireMessage, error) {
	wire := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		w, err := encode(m, notBefore)
		if err != nil {
			return nil, err
		}
		wire[i] = w
	}
	return wire, nil
}

// batches splits wire into batches of at most 10 messages and
// MaxMessageSize bytes, the limits of one SendMessageBatch or PublishBatch.
func batches(wire []wireMessage) [][]wireMessage {
	var out [][]wireMessage
	var cur []wireMessage
	size := 0
	for _, w := range wire {
		if len(cur) == maxBatch || (len(cur) > 0 && size+w.size() > MaxMessageSize) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, w)
		size += w.size()
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func snsFailures(failed []snstypes.BatchResultErrorEntry) map[string]string {
	m := map[string]string{}
	for _, f := range failed {
		m[aws.ToString(f.Id)] = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
	}
	return m
}

func batchFailure(what string, batch []wireMessage, failed map[string]string) error {
	var parts []string
	for i, w := range batch {
		if reason, ok := failed[strconv.Itoa(i)]; ok {
			parts = append(parts, w.uuid+" ("+reason+")")
		}
	}
	return fmt.Errorf("sqs: %s: %d of %d messages failed: %s", what, len(failed), len(batch), strings.Join(parts, ", "))
}

func (b *Broker) opError(op, topic string, err error) error {
	if b.isClosed() && errors.Is(err, context.Canceled) {
		return broker.ErrClosed
	}
	return fmt.Errorf("sqs: %s topic %s at %s: %w", op, topic, b.where(), err)
}

// planDelay returns the DelaySeconds of the first hop of a delay, and the
// time before which the message must not be delivered when the delay is
// longer than SQS's 15 minutes (zero otherwise).
func planDelay(now time.Time, delay time.Duration) (int32, time.Time) {
	if delay <= 0 {
		return 0, time.Time{}
	}
	if delay > maxDelay {
		return int32(maxDelay / time.Second), now.Add(delay)
	}
	return int32((delay + time.Second - 1) / time.Second), time.Time{}
}

// maxDelay is SQS's longest DelaySeconds.
const maxDelay = 15 * time.Minute
