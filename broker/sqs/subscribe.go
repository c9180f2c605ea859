package sqs

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/harvesthub/hub/broker"
)

// keyDeliveryCount is hub.KeyDeliveryCount.
const keyDeliveryCount = "hub-delivery-count"

// noRetry turns off the SDK's retries of ReceiveMessage: the loop retries
// itself and logs why.
func noRetry(o *sqs.Options) { o.RetryMaxAttempts = 1 }

// cleanupTimeout bounds the calls that hand messages back or delete them
// after a subscription or the broker stopped.
const cleanupTimeout = 5 * time.Second

// Subscribe joins the default group of topic (its own queue) with a
// prefetch of Config.MaxMessages.
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return b.SubscribeGroup(ctx, topic, broker.Group{Prefetch: b.cfg.MaxMessages})
}

// SubscribeGroup joins group g.Name of topic: it creates the group's queue
// and subscribes it to the topic if needed, then receives in batches of up
// to Config.MaxMessages with long polling, never holding more than
// g.Prefetch delivered and unacked messages. An ack deletes the message
// (batched over Config.AckWindow); a nack makes it visible again at once
// (or after Config.NackDelay), and its next delivery carries
// hub-delivery-count from SQS's ApproximateReceiveCount. When ctx is done receiving stops; the channel is
// closed once every delivered message is acked or nacked. Unacked messages
// are made visible at once when the broker is closed.
func (b *Broker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	url, err := b.groupQueue(ctx, topic, g.Name)
	if err != nil {
		return nil, err
	}
	s := &subscription{
		b:     b,
		url:   url,
		out:   make(chan *message.Message),
		slots: make(chan struct{}, max(g.Prefetch, 1)),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, broker.ErrClosed
	}
	b.subs.Add(1)
	b.mu.Unlock()
	go s.run(ctx)
	return s.out, nil
}

type subscription struct {
	b     *Broker
	url   string
	out   chan *message.Message
	slots chan struct{} // one token per received, unsettled message
}

func (s *subscription) release(n int) {
	for range n {
		<-s.slots
	}
}

// acquire takes one slot, waiting for it, then up to max-1 more that are
// free; it returns 0 when ctx is done first.
func (s *subscription) acquire(ctx context.Context, most int) int {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < most {
		select {
		case s.slots <- struct{}{}:
			n++
			continue
		default:
		}
		break
	}
	return n
}

func (s *subscription) run(ctx context.Context) {
	defer s.b.subs.Done()
	b := s.b
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()

	acks := newAcker(b, s.url)
	var inflight sync.WaitGroup
	wait := int32(b.cfg.WaitTime.Round(time.Second) / time.Second)
	visibility := int32(b.cfg.VisibilityTimeout / time.Second)
	failures := 0
	for {
		n := s.acquire(ctx, b.cfg.MaxMessages)
		if n == 0 {
			break
		}
		out, err := b.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(s.url),
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             wait,
			VisibilityTimeout:           visibility,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		}, noRetry)
		if err != nil {
			s.release(n)
			if ctx.Err() != nil {
				break
			}
			// Retry at once after one failure, then every second.
			failures++
			b.cfg.Logger.Warn("sqs: receive failed", "queue", s.url, "failures", failures, "error", err)
			if failures > 1 {
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
			continue
		}
		failures = 0
		s.release(n - len(out.Messages))
		if len(out.Messages) > 0 {
			b.cfg.Logger.Debug("sqs: received", "queue", s.url, "asked", n, "got", len(out.Messages))
		}
		for i, m := range out.Messages {
			if !s.handle(ctx, m, acks, &inflight) {
				rest := out.Messages[i:]
				s.handBack(rest)
				s.release(len(rest))
				break
			}
		}
	}
	inflight.Wait()
	acks.close()
	close(s.out)
}

// handle delivers m, or sends a long-delayed message on; it returns false
// when ctx ended before m was delivered (m is then still the caller's).
func (s *subscription) handle(ctx context.Context, m types.Message, acks *acker, inflight *sync.WaitGroup) bool {
	b := s.b
	d, err := decode(m)
	if err != nil {
		// Deliver what there is: the hub dead-letters what it cannot decode.
		b.cfg.Logger.Warn("sqs: undecodable message delivered as is", "queue", s.url, "error", err)
		d = decoded{msg: message.NewMessage(aws.ToString(m.MessageId), []byte(aws.ToString(m.Body))), body: aws.ToString(m.Body)}
	}
	if !d.notBefore.IsZero() {
		if remaining := time.Until(d.notBefore); remaining > 0 {
			s.forward(ctx, m, remaining, acks)
			return true
		}
	}
	if n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); n > 1 {
		d.msg.Metadata.Set(keyDeliveryCount, strconv.Itoa(n))
	}
	// The message's context ends when it is settled, as Watermill's
	// subscribers do.
	msgCtx, settled := context.WithCancel(ctx)
	d.msg.SetContext(msgCtx)
	select {
	case s.out <- d.msg:
	case <-ctx.Done():
		settled()
		return false
	}
	inflight.Add(1)
	go s.await(d.msg, m.ReceiptHandle, acks, inflight, settled)
	return true
}

// forward sends a message whose delay is longer than one SQS hop on for the
// next hop and deletes the received copy; it is never delivered early.
func (s *subscription) forward(ctx context.Context, m types.Message, remaining time.Duration, acks *acker) {
	defer s.release(1)
	delay, _ := planDelay(time.Now(), min(remaining, maxDelay))
	_, err := s.b.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(s.url),
		MessageBody:       m.Body,
		MessageAttributes: m.MessageAttributes,
		DelaySeconds:      delay,
	})
	if err != nil {
		// It comes back after the visibility timeout and is tried again.
		s.b.cfg.Logger.Warn("sqs: forwarding a delayed message failed", "queue", s.url, "error", err)
		return
	}
	acks.add(m.ReceiptHandle)
}

// await settles one delivered message.
func (s *subscription) await(msg *message.Message, handle *string, acks *acker, inflight *sync.WaitGroup, settled context.CancelFunc) {
	defer inflight.Done()
	defer s.release(1)
	defer settled()
	var extend <-chan time.Time
	if !s.b.cfg.NoVisibilityExtension {
		t := time.NewTicker(s.b.cfg.VisibilityTimeout / 2)
		defer t.Stop()
		extend = t.C
	}
	for {
		select {
		case <-msg.Acked():
			acks.add(handle)
			return
		case <-msg.Nacked():
			s.visible(handle, s.b.cfg.NackDelay)
			return
		case <-s.b.ctx.Done():
			select {
			case <-msg.Acked():
				acks.add(handle)
			default:
				s.visible(handle, 0)
			}
			return
		case <-extend:
			s.visible(handle, s.b.cfg.VisibilityTimeout)
		}
	}
}

// visible makes a message visible again after delay: a nack, or an
// extension of its visibility timeout.
func (s *subscription) visible(handle *string, delay time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := s.b.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(s.url), ReceiptHandle: handle, VisibilityTimeout: int32(delay / time.Second),
	}); err != nil {
		s.b.cfg.Logger.Warn("sqs: changing a message's visibility failed", "queue", s.url, "visibility", delay, "error", err)
	}
}

// handBack makes received but undelivered messages visible again at once.
func (s *subscription) handBack(msgs []types.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	if _, err := s.b.sqs.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: aws.String(s.url), Entries: entries,
	}); err != nil {
		s.b.cfg.Logger.Warn("sqs: handing back undelivered messages failed; they come back after their visibility timeout", "queue", s.url, "error", err)
	}
}

// acker deletes acked messages in batches: the first ack opens a window of
// Config.AckWindow, and the batch is sent when the window ends or holds 10
// receipts. Up to ackFlushes batches are in flight at once.
type acker struct {
	b       *Broker
	url     string
	in      chan *string
	done    chan struct{}
	flushes sync.WaitGroup
	sem     chan struct{}
}

const ackFlushes = 4

func newAcker(b *Broker, url string) *acker {
	a := &acker{b: b, url: url, in: make(chan *string, maxBatch), done: make(chan struct{}), sem: make(chan struct{}, ackFlushes)}
	go a.loop()
	return a
}

func (a *acker) add(handle *string) { a.in <- handle }

// close flushes what was added and waits for every delete.
func (a *acker) close() {
	close(a.in)
	<-a.done
}

func (a *acker) loop() {
	defer close(a.done)
	defer a.flushes.Wait()
	for h := range a.in {
		batch := []*string{h}
		timer := time.NewTimer(a.b.cfg.AckWindow)
	collect:
		for len(batch) < maxBatch {
			select {
			case h, ok := <-a.in:
				if !ok {
					break collect
				}
				batch = append(batch, h)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		a.sem <- struct{}{}
		a.flushes.Add(1)
		go a.flush(batch)
	}
}

func (a *acker) flush(batch []*string) {
	defer a.flushes.Done()
	defer func() { <-a.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, h := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: h}
	}
	out, err := a.b.sqs.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(a.url), Entries: entries})
	if err != nil {
		a.b.cfg.Logger.Warn("sqs: deleting acked messages failed; they will be delivered again", "queue", a.url, "count", len(batch), "error", err)
		return
	}
	for _, f := range out.Failed {
		a.b.cfg.Logger.Warn("sqs: deleting an acked message failed; it will be delivered again", "queue", a.url,
			"code", aws.ToString(f.Code), "error", aws.ToString(f.Message))
	}
}
