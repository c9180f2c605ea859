// Package dlq reads, replays and purges dead letters over any broker.
//
// When a handler gives up on a message, the hub publishes it to the topic's
// dead-letter topic ("<topic>.dlq" by default) with its original payload
// (ciphertext stays ciphertext) and metadata, plus the hub-dlq-* keys that
// say why. [FromMessage] reads such a message back as a [Letter].
//
// [List], [Replay] and [Purge] work on any broker.Broker: they consume the
// dead-letter topic's default group, hold what they read unacked until they
// are done (so a letter is never seen twice in one call), ack what they
// remove and nack the rest back. A replayed letter is acked only after its
// republish returned, so an interrupted replay loses nothing; run again, it
// may publish a letter twice, and the idempotency key it keeps makes the
// handler see it once.
//
// # SQS
//
// An SQS receive request the client gave up on may still be served, hiding
// the letters it takes for the visibility timeout. Use a broker with short
// polls for dlq calls (sqs.Config.WaitTime below 500ms, which rounds to 0s,
// as hubctl does) and a VisibilityTimeout longer than one call; a scan
// stops receiving, then waits a moment before it hands letters back.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
)

// ErrNotLetter is returned by FromMessage for a message without the
// dead-letter keys.
var ErrNotLetter = errors.New("dlq: not a dead letter (no hub-original-topic)")

// ErrNotFound is returned by Get when no letter has the ID.
var ErrNotFound = errors.New("dlq: letter not found")

// Letter is a dead-lettered message.
type Letter struct {
	// ID is the message ID, the same as the original message's.
	ID string
	// Key is the idempotency key; a replay keeps it.
	Key           string
	OriginalTopic string
	Handler       string
	// Reason is one of hub.ReasonExhausted, ReasonPermanent, ReasonDecode,
	// ReasonPanic.
	Reason string
	// Error is the last error's text.
	Error    string
	Attempts int
	// FirstFailedAt and FailedAt are the first and last failure times.
	FirstFailedAt time.Time
	FailedAt      time.Time
	// Payload is the original payload, encrypted if it was.
	Payload []byte
	// Metadata is the dead-letter message's metadata, without
	// hub-delivery-count (which would count the deliveries of the dead
	// letter itself).
	Metadata map[string]string
}

// FromMessage reads a dead-letter message.
func FromMessage(m *message.Message) (Letter, error) {
	md := m.Metadata
	if md.Get(hub.KeyOriginalTopic) == "" {
		return Letter{}, fmt.Errorf("%w: message %s", ErrNotLetter, m.UUID)
	}
	attempts, _ := strconv.Atoi(md.Get(hub.KeyAttempts))
	l := Letter{
		ID:            m.UUID,
		Key:           md.Get(hub.KeyKey),
		OriginalTopic: md.Get(hub.KeyOriginalTopic),
		Handler:       md.Get(hub.KeyHandler),
		Reason:        md.Get(hub.KeyDLQReason),
		Error:         md.Get(hub.KeyDLQError),
		Attempts:      attempts,
		FirstFailedAt: parseTime(md.Get(hub.KeyFirstFailedAt)),
		FailedAt:      parseTime(md.Get(hub.KeyFailedAt)),
		Payload:       append([]byte(nil), m.Payload...),
		Metadata:      make(map[string]string, len(md)),
	}
	if l.Key == "" {
		l.Key = m.UUID
	}
	for k, v := range md {
		l.Metadata[k] = v
	}
	// Set by the adapter when the dead letter itself is delivered again
	// (after an earlier List handed it back): not the letter's.
	delete(l.Metadata, hub.KeyDeliveryCount)
	return l, nil
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// dlqKeys are removed from a replayed message.
var dlqKeys = []string{hub.KeyDLQReason, hub.KeyDLQError, hub.KeyOriginalTopic, hub.KeyHandler,
	hub.KeyAttempts, hub.KeyFailedAt, hub.KeyFirstFailedAt, hub.KeyAttempt, hub.KeyRedeliveries,
	hub.KeyDeliveryCount, hub.KeyTargetGroup}

// ReplayMessage returns the message a replay publishes: the original
// payload and metadata, the same ID and idempotency key, the attempt count
// reset, addressed to the failed handler's group only.
func (l Letter) ReplayMessage() *message.Message {
	m := message.NewMessage(l.ID, append([]byte(nil), l.Payload...))
	for k, v := range l.Metadata {
		m.Metadata[k] = v
	}
	for _, k := range dlqKeys {
		delete(m.Metadata, k)
	}
	m.Metadata[hub.KeyKey] = l.Key
	if l.Handler != "" {
		m.Metadata[hub.KeyTargetGroup] = l.Handler
	}
	return m
}

// Filter selects letters. Its zero value selects every letter.
type Filter struct {
	// Handler keeps letters of this handler only.
	Handler string
	// ErrorContains keeps letters whose error text contains it.
	ErrorContains string
	// Reason keeps letters with this reason.
	Reason string
	// Since and Until bound the last failure time (Until exclusive).
	Since, Until time.Time
	// IDs keeps letters with these IDs.
	IDs []string
}

// Validate reports a filter that can select nothing by construction.
func (f Filter) Validate() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return fmt.Errorf("dlq: filter Until %s is not after Since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}

// Match reports whether l passes f.
func (f Filter) Match(l Letter) bool {
	if f.Handler != "" && l.Handler != f.Handler {
		return false
	}
	if f.Reason != "" && l.Reason != f.Reason {
		return false
	}
	if f.ErrorContains != "" && !strings.Contains(l.Error, f.ErrorContains) {
		return false
	}
	if !f.Since.IsZero() && l.FailedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !l.FailedAt.Before(f.Until) {
		return false
	}
	if len(f.IDs) > 0 {
		for _, id := range f.IDs {
			if id == l.ID {
				return true
			}
		}
		return false
	}
	return true
}

// Options bound one List, Replay or Purge.
type Options struct {
	Filter Filter
	// Limit stops after this many matching letters. Zero means no limit.
	Limit int
	// Idle is how long to wait for one more letter before deciding the queue
	// is drained. Defaults to 1s.
	Idle time.Duration
	// MaxScan bounds how many letters one call holds unacked. Defaults to
	// 10000 (with a subscription prefetch that large).
	MaxScan int
}

// stopGrace is how long a scan waits, once it stopped receiving, before
// handing back the letters it kept.
const stopGrace = 100 * time.Millisecond

// IdleDefault and MaxScanDefault are the defaults of Options.
const (
	IdleDefault    = time.Second
	MaxScanDefault = 10000
)

func (o Options) withDefaults() (Options, error) {
	if o.Idle == 0 {
		o.Idle = IdleDefault
	}
	if o.MaxScan == 0 {
		o.MaxScan = MaxScanDefault
	}
	if o.Limit < 0 || o.Idle < 0 || o.MaxScan < 0 {
		return o, errors.New("dlq: Limit, Idle and MaxScan must not be negative")
	}
	return o, o.Filter.Validate()
}

// scan consumes topic's default group and calls visit for each letter. A
// visit returning (true, nil) acks the message; (false, nil) keeps it; an
// error stops the scan. Unparseable messages are kept. Everything kept is
// nacked back at the end.
func scan(ctx context.Context, b broker.Broker, topic string, o Options, visit func(*message.Message, Letter) (remove bool, stop bool, err error)) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if topic == "" {
		return errors.New("dlq: empty topic; name the dead-letter topic, such as records.dlq")
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := b.SubscribeGroup(sctx, topic, broker.Group{Prefetch: o.MaxScan})
	if err != nil {
		return fmt.Errorf("dlq: subscribing to %q: %w", topic, err)
	}
	var kept []*message.Message
	defer func() {
		// Stop receiving before handing anything back: a receive still
		// waiting (an SQS long poll) would otherwise take the letters just
		// made visible again and lose them to the cancelled request until
		// their visibility timeout ends.
		cancel()
		if len(kept) > 0 {
			// A receive request sent just before the cancel may still be
			// served (SQS serves a request whose client went away): let it
			// find nothing visible before the letters become visible again.
			t := time.NewTimer(stopGrace)
			<-t.C
		}
		for _, m := range kept {
			m.Nack()
		}
		for m := range ch { // drain what was delivered after we stopped
			m.Nack()
		}
	}()
	seen := 0
	idle := time.NewTimer(o.Idle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			seen++
			l, perr := FromMessage(m)
			if perr != nil {
				kept = append(kept, m)
			} else {
				remove, stop, verr := visit(m, l)
				if verr != nil {
					kept = append(kept, m)
					return verr
				}
				if remove {
					m.Ack()
				} else {
					kept = append(kept, m)
				}
				if stop {
					return nil
				}
			}
			if seen >= o.MaxScan {
				return nil
			}
			if !idle.Stop() {
				<-idle.C
			}
			idle.Reset(o.Idle)
		}
	}
}

// List returns the letters in dlqTopic that match o.Filter, oldest
// delivered first, without removing any.
func List(ctx context.Context, b broker.Broker, dlqTopic string, o Options) ([]Letter, error) {
	var out []Letter
	err := scan(ctx, b, dlqTopic, o, func(_ *message.Message, l Letter) (bool, bool, error) {
		if !o.Filter.Match(l) {
			return false, false, nil
		}
		out = append(out, l)
		return false, o.Limit > 0 && len(out) >= o.Limit, nil
	})
	return out, err
}

// Get returns the letter with id, or ErrNotFound.
func Get(ctx context.Context, b broker.Broker, dlqTopic, id string, o Options) (Letter, error) {
	o.Filter = Filter{IDs: []string{id}}
	o.Limit = 1
	ls, err := List(ctx, b, dlqTopic, o)
	if err != nil {
		return Letter{}, err
	}
	if len(ls) == 0 {
		return Letter{}, fmt.Errorf("%w: %s in %s", ErrNotFound, id, dlqTopic)
	}
	return ls[0], nil
}

// ReplayOptions configure Replay.
type ReplayOptions struct {
	Options
	// To publishes to this topic instead of each letter's original topic.
	// A letter replayed to another topic than its own reaches every group
	// of that topic (its failed handler's name means nothing there).
	To string
	// ToGroup addresses the letters to this handler (consumer group)
	// instead of the one that failed them: after a handler was renamed,
	// replay its letters to the new name.
	ToGroup string
	// Force replays even to a group the broker reports without a consumer
	// (or without a queue). Without it Replay refuses, with an error
	// wrapping ErrNoConsumer, and the letter stays in the DLQ.
	Force bool
	// DryRun reports what would be replayed and changes nothing.
	DryRun bool
	// Progress, when set, is called after each replayed letter.
	Progress func(done int)
}

// ReplayResult counts what Replay did.
type ReplayResult struct {
	Replayed int
	Letters  []Letter // the letters replayed (or, on a dry run, that would be)
}

// Replay publishes matching letters back to their original topic (or
// o.To), addressed to the handler that failed them, with the attempt count
// reset and the idempotency key kept. Each letter leaves the DLQ only once
// its republish has returned without error.
func Replay(ctx context.Context, b broker.Broker, dlqTopic string, o ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	checked := map[[2]string]error{}
	err := scan(ctx, b, dlqTopic, o.Options, func(_ *message.Message, l Letter) (bool, bool, error) {
		if !o.Filter.Match(l) {
			return false, false, nil
		}
		stop := o.Limit > 0 && len(res.Letters)+1 >= o.Limit
		if o.DryRun {
			res.Letters = append(res.Letters, l)
			return false, stop, nil
		}
		to := l.OriginalTopic
		if o.To != "" {
			to = o.To
		}
		rm := l.ReplayMessage()
		group := l.Handler
		if o.ToGroup != "" {
			group = o.ToGroup
			rm.Metadata[hub.KeyTargetGroup] = group
		}
		if to != l.OriginalTopic && o.ToGroup == "" {
			delete(rm.Metadata, hub.KeyTargetGroup)
			group = ""
		}
		if !o.Force {
			k := [2]string{to, group}
			err, seen := checked[k]
			if !seen {
				err = hasConsumer(ctx, b, to, group)
				checked[k] = err
			}
			if err != nil {
				return false, true, fmt.Errorf("dlq: not replaying %s: %w", l.ID, err)
			}
		}
		if err := b.Publish(to, rm); err != nil {
			return false, true, fmt.Errorf("dlq: replaying %s to %q: %w", l.ID, to, err)
		}
		res.Replayed++
		res.Letters = append(res.Letters, l)
		if o.Progress != nil {
			o.Progress(res.Replayed)
		}
		return true, stop, nil
	})
	return res, err
}

// ErrNoConsumer is returned by Replay for a letter whose target group has
// no queue or no consumer: replayed there it would sit unread (its handler
// was renamed or removed). Replay to the new name with ToGroup, or pass
// Force.
var ErrNoConsumer = errors.New("dlq: the target group has no consumer")

// groupInspector is implemented by brokers that inspect named groups'
// queues (RabbitMQ cannot list them).
type groupInspector interface {
	GroupQueues(ctx context.Context, topic string, groups ...string) ([]broker.QueueStats, error)
}

// hasConsumer checks, on brokers that can tell, that group (every group
// when empty) of topic has a queue with a consumer.
func hasConsumer(ctx context.Context, b broker.Broker, topic, group string) error {
	var qs []broker.QueueStats
	var err error
	if gi, ok := b.(groupInspector); ok && group != "" {
		qs, err = gi.GroupQueues(ctx, topic, group)
	} else if in, ok := b.(broker.Inspector); ok {
		qs, err = in.Queues(ctx, topic)
	} else {
		return nil // the broker cannot tell; replay as asked
	}
	if errors.Is(err, broker.ErrUnknownTopic) {
		return fmt.Errorf("%w: topic %q has no queue; start its handler first, or pass Force", ErrNoConsumer, topic)
	}
	if err != nil {
		return fmt.Errorf("dlq: inspecting %q before replaying: %w", topic, err)
	}
	for _, q := range qs {
		if group != "" && q.Group != group {
			continue
		}
		if q.Consumers != 0 { // -1: the broker does not report consumers
			return nil
		}
	}
	if group == "" {
		return fmt.Errorf("%w: no group of topic %q has a consumer; start a handler first, or pass Force", ErrNoConsumer, topic)
	}
	return fmt.Errorf("%w: group %q of topic %q has no consumer (renamed or removed handler?); replay to its new name with ToGroup, or pass Force", ErrNoConsumer, group, topic)
}

// Purge removes matching letters and returns how many.
func Purge(ctx context.Context, b broker.Broker, dlqTopic string, o Options) (int, error) {
	n := 0
	err := scan(ctx, b, dlqTopic, o, func(_ *message.Message, l Letter) (bool, bool, error) {
		if !o.Filter.Match(l) {
			return false, false, nil
		}
		n++
		return true, o.Limit > 0 && n >= o.Limit, nil
	})
	return n, err
}
