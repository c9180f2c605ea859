package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

// Message is a consumed message with its decoded payload.
type Message[T any] struct {
	// ID is the broker message ID (Watermill UUID).
	ID string
	// Key is the idempotency key: hub-key, or ID when the publisher set none.
	Key string
	// Topic the message was consumed from.
	Topic string
	// Payload is the decoded (and upcast) payload.
	Payload T
	// Metadata is the message metadata. It is shared with the hub: read it,
	// do not modify it.
	Metadata message.Metadata
	// Attempt is the 1-based number of this handler call for the message. It
	// counts in-process retries, delayed retries and broker redeliveries.
	Attempt int
	// PublishedAt is when the message was first published (zero if unknown).
	PublishedAt time.Time
}

// HandlerFunc handles one message. Returning nil acks it; an error retries
// it by the handler's policy; retry.Permanent(err) dead-letters it at once;
// retry.After(d) retries after d. A panic is a permanent error.
type HandlerFunc[T any] func(ctx context.Context, m Message[T]) error

// PipeFunc handles one message and returns messages to publish to the
// pipe's output topic. They are published before the input is acked.
type PipeFunc[In, Out any] func(ctx context.Context, m Message[In]) ([]Out, error)

// HandlerOption configures one handler.
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	name        string
	concurrency int
	policy      *retry.Policy
	middleware  []message.HandlerMiddleware
}

// Name names the handler. The name is its consumer group (its own queue on
// the broker), the scope of its idempotency keys, and the hub-handler of its
// dead letters. Defaults to the topic; two handlers of one topic need names.
func Name(name string) HandlerOption { return func(c *handlerConfig) { c.name = name } }

// Concurrency sets how many messages the handler processes at once, which is
// also the broker prefetch of its subscription. Defaults to 1.
func Concurrency(n int) HandlerOption { return func(c *handlerConfig) { c.concurrency = n } }

// WithHandlerRetry overrides Config.Retry for this handler.
func WithHandlerRetry(p retry.Policy) HandlerOption {
	return func(c *handlerConfig) { c.policy = &p }
}

// WithMiddleware adds Watermill middleware around every attempt of this
// handler, inside Config.Middleware.
func WithMiddleware(m ...message.HandlerMiddleware) HandlerOption {
	return func(c *handlerConfig) { c.middleware = append(c.middleware, m...) }
}

// Handle registers fn for messages of topic. Registered after Run started,
// the handler starts at once.
func Handle[T any](h *Hub, topic string, fn HandlerFunc[T], opts ...HandlerOption) error {
	if fn == nil {
		return fmt.Errorf("%w: Handle(%q) with a nil HandlerFunc", ErrInvalidConfig, topic)
	}
	info := schemaOf[T](&h.schemas)
	return h.register(topic, "", opts, func(hd *handler) {
		hd.decode = func(msg *message.Message) (any, error) {
			var v T
			payload, err := h.plaintext(msg)
			if err != nil {
				return nil, err
			}
			if err := decodePayload(h.cfg.Codec, info, msg.Metadata, payload, &v); err != nil {
				return nil, err
			}
			return v, nil
		}
		hd.call = func(ctx context.Context, msg *message.Message, v any, d *delivery) ([]*message.Message, error) {
			return nil, fn(ctx, typedMessage[T](msg, v, hd, d))
		}
	})
}

// Pipe registers fn for messages of from and publishes what it returns to
// to, with the input's correlation ID. Outputs are published before the
// input is acked; a failed publish is retried like a handler error.
func Pipe[In, Out any](h *Hub, from, to string, fn PipeFunc[In, Out], opts ...HandlerOption) error {
	if fn == nil {
		return fmt.Errorf("%w: Pipe(%q -> %q) with a nil PipeFunc", ErrInvalidConfig, from, to)
	}
	if err := validTopic(to); err != nil {
		return err
	}
	in := schemaOf[In](&h.schemas)
	out := schemaOf[Out](&h.schemas)
	return h.register(from, to, opts, func(hd *handler) {
		hd.decode = func(msg *message.Message) (any, error) {
			var v In
			payload, err := h.plaintext(msg)
			if err != nil {
				return nil, err
			}
			if err := decodePayload(h.cfg.Codec, in, msg.Metadata, payload, &v); err != nil {
				return nil, err
			}
			return v, nil
		}
		hd.call = func(ctx context.Context, msg *message.Message, v any, d *delivery) ([]*message.Message, error) {
			outs, err := fn(ctx, typedMessage[In](msg, v, hd, d))
			if err != nil || len(outs) == 0 {
				return nil, err
			}
			msgs := make([]*message.Message, len(outs))
			for i := range outs {
				m, err := h.newMessage(ctx, out, outs[i], publishConfig{})
				if err != nil {
					return nil, retry.Permanent(fmt.Errorf("hub: pipe output %d: %w", i, err))
				}
				if cid := msg.Metadata.Get(KeyCorrelationID); cid != "" {
					m.Metadata.Set(KeyCorrelationID, cid)
				}
				msgs[i] = m
			}
			return msgs, nil
		}
	})
}

func typedMessage[T any](msg *message.Message, v any, hd *handler, d *delivery) Message[T] {
	return Message[T]{
		ID:          msg.UUID,
		Key:         d.key,
		Topic:       hd.topic,
		Payload:     v.(T),
		Metadata:    msg.Metadata,
		Attempt:     d.attempt,
		PublishedAt: parseTime(msg.Metadata.Get(KeyPublishedAt)),
	}
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func validTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic; name the topic to consume or publish", ErrInvalidConfig)
	}
	return nil
}

// handler is the untyped unit the router runs for one Handle or Pipe.
type handler struct {
	h           *Hub
	name        string
	topic       string
	outTopic    string
	concurrency int
	policy      retry.Policy
	decode      func(msg *message.Message) (any, error)
	call        func(ctx context.Context, msg *message.Message, v any, d *delivery) ([]*message.Message, error)
	chain       message.HandlerFunc // user middleware around call; nil when none
	keyPrefix   string              // name + "/"

	mu     sync.Mutex
	leases map[*delivery]struct{} // claims held now, renewed by Hub.renewLeases
}

// delivery is the state of one delivered message across its attempts.
type delivery struct {
	key     string
	attempt int
	value   any
	lastErr error // the last failure, for telemetry and logs

	// The claim, renewed by the hub's lease loop while the delivery is
	// tracked in its handler's leases; guarded by the handler's mu.
	scoped, token string
	renewedAt     time.Time
	leaseLost     bool
	// attemptStart is when the running attempt began (zero between
	// attempts), for Health's StuckAfter; set only when StuckAfter is.
	attemptStart time.Time
}

type deliveryCtxKey struct{}

// Claim identifies the idempotency claim a handler attempt runs under. A
// handler that records its work in the same database as its idempotency
// store completes the key inside its own transaction with it (pgstore's
// CompleteTx), so state and key commit together: the hub's own Complete
// afterwards finds the key completed with its token and succeeds.
type Claim struct {
	// Handler is the handler name, the scope of the key.
	Handler string
	// Key is the message's idempotency key, unscoped.
	Key string
	// StoreKey is the key as the idempotency store holds it (scoped by
	// handler).
	StoreKey string
	// Token proves the claim; Complete and Release need it.
	Token string
}

type claimCtxKey struct{}

// ClaimFrom returns the claim of the delivery a handler's ctx belongs to.
func ClaimFrom(ctx context.Context) (Claim, bool) {
	c, ok := ctx.Value(claimCtxKey{}).(*Claim)
	if !ok {
		return Claim{}, false
	}
	return *c, true
}

func (h *Hub) register(topic, outTopic string, opts []HandlerOption, bind func(*handler)) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	hc := handlerConfig{concurrency: ConcurrencyDefault}
	for _, o := range opts {
		o(&hc)
	}
	if hc.concurrency < 1 {
		return fmt.Errorf("%w: handler of %q: Concurrency(%d); use 1 or more", ErrInvalidConfig, topic, hc.concurrency)
	}
	policy := h.cfg.Retry
	if hc.policy != nil {
		policy = hc.policy.WithDefaults()
		if err := policy.Validate(); err != nil {
			return fmt.Errorf("%w: handler of %q: %w", ErrInvalidConfig, topic, err)
		}
	}
	name := broker.GroupName(topic, hc.name)
	hd := &handler{
		h:           h,
		name:        name,
		topic:       topic,
		outTopic:    outTopic,
		concurrency: hc.concurrency,
		policy:      policy,
		keyPrefix:   name + "/",
		leases:      make(map[*delivery]struct{}),
	}
	bind(hd)
	if mws := append(append([]message.HandlerMiddleware(nil), h.cfg.Middleware...), hc.middleware...); len(mws) > 0 {
		inner := func(msg *message.Message) ([]*message.Message, error) {
			d := msg.Context().Value(deliveryCtxKey{}).(*delivery)
			return hd.call(msg.Context(), msg, d.value, d)
		}
		chain := message.HandlerFunc(inner)
		for i := len(mws) - 1; i >= 0; i-- {
			chain = mws[i](chain)
		}
		hd.chain = chain
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.st {
	case stateStopping, stateClosed:
		return ErrClosed
	}
	if _, dup := h.handlers[name]; dup {
		return fmt.Errorf("%w: %q is taken (topic %q); give this handler another with hub.Name", ErrDuplicateHandler, name, topic)
	}
	if d, ok := h.b.(broker.Declarer); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.Declare(ctx, topic, name)
		cancel()
		if err != nil {
			return fmt.Errorf("hub: declaring group %q of %q: %w", name, topic, err)
		}
	}
	sub := &groupSubscriber{b: h.b, group: broker.Group{Name: name, Prefetch: hd.concurrency}}
	h.router.AddConsumerHandler(name, topic, sub, hd.handle)
	h.handlers[name] = hd
	if h.st == stateRunning {
		runCtx := h.runCtx
		go func() {
			select {
			case <-h.routerUp:
			case <-h.stopped: // the hub stopped before its router ran
				return
			}
			if err := h.router.RunHandlers(runCtx); err != nil {
				h.log.Error("hub: starting handler registered after Run", "handler", name, "topic", topic, "error", err)
			}
		}()
	}
	return nil
}

// groupSubscriber gives the router one handler's consumer group; closing it
// ends that handler's subscriptions, not the broker.
type groupSubscriber struct {
	b       broker.Broker
	group   broker.Group
	mu      sync.Mutex
	cancels []context.CancelFunc
}

func (s *groupSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancels = append(s.cancels, cancel)
	s.mu.Unlock()
	return s.b.SubscribeGroup(ctx, topic, s.group)
}

func (s *groupSubscriber) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cancels {
		c()
	}
	s.cancels = nil
	return nil
}

func (hd *handler) oldestAttempt() time.Time {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	var oldest time.Time
	for d := range hd.leases {
		if t := d.attemptStart; !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return oldest
}

// Outcomes of a delivery, the values of the hub.outcome attribute.
const (
	OutcomeAck       = "ack"
	OutcomeRetry     = "retry"     // nacked for the broker to deliver again
	OutcomeDelayed   = "delayed"   // published again with a delay (tier 2)
	OutcomeDLQ       = "dlq"       // dead-lettered
	OutcomeDuplicate = "duplicate" // key already completed; handler not called
	OutcomeSkipped   = "skipped"   // addressed to another handler's group
)

var errShuttingDown = errors.New("hub: shutting down; nacked without calling the handler")

// handle runs one delivery through the hub's fixed steps: claim, decode,
// attempts with in-process retries, then complete and ack, or schedule a
// delayed retry, or dead-letter. Its return value tells the router to ack
// (nil) or nack (error).
func (hd *handler) handle(msg *message.Message) error {
	h := hd.h
	if h.stopping() {
		// Shutdown has begun: start nothing new. A message nacked during
		// the drain can come straight back before the subscription closes.
		return errShuttingDown
	}
	if tg := msg.Metadata.Get(KeyTargetGroup); tg != "" && tg != hd.name {
		h.tel.skipped(h.workCtx, hd)
		return nil
	}
	d := &delivery{key: msg.Metadata.Get(KeyKey), attempt: attemptOf(msg.Metadata)}
	ctx, obs := h.tel.startProcess(h.workCtx, hd, msg)
	outcome, err := hd.process(ctx, msg, d)
	if err == nil {
		err = d.lastErr
	}
	obs.end(ctx, outcome, err)
	hd.logOutcome(ctx, msg, d, outcome, err, time.Since(obs.start))
	if outcome == OutcomeRetry {
		if err == nil {
			err = errors.New("hub: nacked")
		}
		return err
	}
	return nil
}

// logOutcome logs a delivery's outcome: at debug, or at warn when it failed
// and will be tried again (dead letters are logged where they happen). It
// never logs the payload.
func (hd *handler) logOutcome(ctx context.Context, msg *message.Message, d *delivery, outcome string, err error, took time.Duration) {
	level := slog.LevelDebug
	if err != nil && (outcome == OutcomeRetry || outcome == OutcomeDelayed) {
		level = slog.LevelWarn
	}
	log := hd.h.log
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("handler", hd.name), slog.String("topic", hd.topic),
		slog.String("message_id", msg.UUID), slog.Int("attempt", d.attempt),
		slog.String("outcome", outcome), slog.Duration("duration", took)}
	if err != nil && outcome != OutcomeAck && outcome != OutcomeDuplicate {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	log.LogAttrs(ctx, level, "hub: message "+outcome, attrs...)
}

func (hd *handler) process(ctx context.Context, msg *message.Message, d *delivery) (string, error) {
	h := hd.h
	if d.key == "" {
		d.key = msg.UUID
	}
	scoped := hd.keyPrefix + d.key

	claim, err := h.store.Claim(ctx, scoped, h.cfg.Lease)
	if err != nil {
		h.log.Warn("hub: idempotency claim failed; nacking", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "error", err)
		hd.pause(hd.policy.InitialInterval)
		return OutcomeRetry, fmt.Errorf("hub: claim %q: %w", d.key, err)
	}
	switch claim.Status {
	case idempotency.Completed:
		return OutcomeDuplicate, nil
	case idempotency.Busy:
		// Another delivery of this key is being handled (a duplicate in
		// flight) or its worker died holding the lease. Look again soon:
		// once the holder completes, the next look acks a duplicate; if it
		// died, a look after the lease's end takes the key over.
		wait := hd.policy.MaxInterval
		if until := time.Until(claim.LeaseUntil); until > 0 && until < wait {
			wait = until
		}
		wait = max(wait, hd.policy.InitialInterval)
		if err := hd.republish(ctx, msg, wait, d.attempt, redeliveriesOf(msg.Metadata)); err != nil {
			hd.pause(hd.policy.InitialInterval)
			return OutcomeRetry, err
		}
		return OutcomeDelayed, nil
	}
	token := claim.Token
	hd.holdLease(d, scoped, token)
	defer hd.dropLease(d)
	ctx = context.WithValue(ctx, claimCtxKey{}, &Claim{Handler: hd.name, Key: d.key, StoreKey: scoped, Token: token})

	v, err := hd.decode(msg)
	if err != nil {
		d.lastErr = err
		return hd.deadLetter(ctx, msg, scoped, token, ReasonDecode, err, d.attempt-1)
	}
	d.value = v

	var bo interface{ NextBackOff() time.Duration }
	for try := 1; ; try++ {
		out, err := hd.attempt(ctx, msg, d)
		if err == nil && len(out) > 0 {
			if perr := h.publishMessages(ctx, hd.outTopic, out); perr != nil {
				err = fmt.Errorf("hub: publishing %d output(s) to %q: %w", len(out), hd.outTopic, perr)
			}
		}
		if err != nil {
			d.lastErr = err
		}
		if err == nil {
			if cerr := hd.complete(ctx, scoped, token); cerr != nil {
				// Acking without Complete risks a duplicate call only if the
				// message comes again; nacking would make one certain.
				h.log.Error("hub: completing idempotency key failed; acking anyway", "handler", hd.name, "key", d.key, "error", cerr)
			}
			return OutcomeAck, nil
		}
		if h.stopping() {
			hd.release(scoped, token)
			return OutcomeRetry, err
		}
		var perm *retry.PermanentError
		if errors.As(err, &perm) {
			reason := ReasonPermanent
			var pe *PanicError
			if errors.As(err, &pe) {
				reason, err = ReasonPanic, pe
			}
			return hd.deadLetter(ctx, msg, scoped, token, reason, err, d.attempt)
		}
		delay, asked := retry.DelayOf(err)
		if try >= hd.policy.Attempts || (asked && delay > hd.policy.MaxInterval) {
			return hd.exhausted(ctx, msg, scoped, token, d, err, delay, asked)
		}
		if !asked {
			if bo == nil {
				bo = hd.policy.NewBackOff()
			}
			delay = bo.NextBackOff()
		}
		h.tel.event(ctx, "retry", d.attempt, err)
		h.log.Debug("hub: handler failed; retrying", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "attempt", d.attempt, "wait", delay, "error", err)
		if !hd.wait(delay) {
			hd.release(scoped, token)
			return OutcomeRetry, fmt.Errorf("hub: shutting down during retry wait: %w", err)
		}
		if hd.leaseLost(d) {
			// Another worker has the key now: retrying here would run the
			// handler twice at once. Let the holder finish.
			return OutcomeRetry, fmt.Errorf("hub: lease of %q lost during retries: %w", d.key, err)
		}
		d.attempt++
	}
}

// exhausted handles a delivery whose in-process attempts are spent: a
// delayed retry through the broker while redeliveries remain, else the DLQ.
func (hd *handler) exhausted(ctx context.Context, msg *message.Message, scoped, token string, d *delivery, cause error, delay time.Duration, asked bool) (string, error) {
	n := redeliveriesOf(msg.Metadata)
	if n >= hd.policy.Redeliveries || hd.policy.Redeliveries == retry.None {
		return hd.deadLetter(ctx, msg, scoped, token, ReasonExhausted, cause, d.attempt)
	}
	if !asked {
		delay = hd.policy.RedeliveryDelayFor(n)
	}
	hd.release(scoped, token)
	if err := hd.republish(ctx, msg, delay, d.attempt+1, n+1, cause); err != nil {
		return OutcomeRetry, err
	}
	hd.h.tel.event(ctx, "delayed_retry", d.attempt, cause)
	return OutcomeDelayed, nil
}

// republish sends a copy of msg back to this handler's group after delay.
func (hd *handler) republish(ctx context.Context, msg *message.Message, delay time.Duration, attempt, redeliveries int, cause ...error) error {
	h := hd.h
	m := message.NewMessage(msg.UUID, msg.Payload)
	m.Metadata = make(message.Metadata, len(msg.Metadata)+4)
	for k, v := range msg.Metadata {
		m.Metadata[k] = v
	}
	delete(m.Metadata, KeyDeliveryCount)
	m.Metadata[KeyAttempt] = strconv.Itoa(attempt)
	m.Metadata[KeyRedeliveries] = strconv.Itoa(redeliveries)
	if len(cause) > 0 && m.Metadata[KeyFirstFailedAt] == "" {
		m.Metadata[KeyFirstFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if dl, ok := h.b.(broker.Delayer); ok {
		pctx, obs := h.tel.startPublish(h.workCtxOr(ctx), hd.topic, m)
		err := dl.PublishDelayed(pctx, hd.topic, hd.name, delay, m)
		obs.end(pctx, 1, err)
		if err != nil {
			return fmt.Errorf("hub: scheduling delayed retry of %s: %w", msg.UUID, err)
		}
		return nil
	}
	// No broker-side delay: wait here, then address the copy to this group.
	if !hd.wait(delay) {
		return errors.New("hub: shutting down before a delayed retry was published")
	}
	m.Metadata[KeyTargetGroup] = hd.name
	pctx, obs := h.tel.startPublish(ctx, hd.topic, m)
	err := h.b.Publish(hd.topic, m)
	obs.end(pctx, 1, err)
	if err != nil {
		return fmt.Errorf("hub: publishing retry of %s: %w", msg.UUID, err)
	}
	return nil
}

// deadLetter publishes msg to the DLQ topic with the reason, then releases
// the key so a replay can be handled. A failed DLQ publish nacks.
func (hd *handler) deadLetter(ctx context.Context, msg *message.Message, scoped, token, reason string, cause error, attempts int) (string, error) {
	h := hd.h
	now := time.Now().UTC().Format(time.RFC3339Nano)
	m := message.NewMessage(msg.UUID, msg.Payload)
	m.Metadata = make(message.Metadata, len(msg.Metadata)+8)
	for k, v := range msg.Metadata {
		m.Metadata[k] = v
	}
	delete(m.Metadata, KeyDeliveryCount)
	delete(m.Metadata, KeyTargetGroup)
	m.Metadata[KeyDLQReason] = reason
	m.Metadata[KeyDLQError] = truncate(cause.Error(), 4096)
	m.Metadata[KeyOriginalTopic] = hd.topic
	m.Metadata[KeyHandler] = hd.name
	m.Metadata[KeyAttempts] = strconv.Itoa(max(attempts, 0))
	m.Metadata[KeyFailedAt] = now
	if m.Metadata[KeyFirstFailedAt] == "" {
		m.Metadata[KeyFirstFailedAt] = now
	}
	if m.Metadata[KeyKey] == "" {
		m.Metadata[KeyKey] = msg.UUID
	}
	pctx, obs := h.tel.startPublish(ctx, h.DeadLetterTopic(hd.topic), m)
	err := h.b.Publish(h.DeadLetterTopic(hd.topic), m)
	obs.end(pctx, 1, err)
	if err != nil {
		hd.release(scoped, token)
		h.log.Error("hub: dead-letter publish failed; nacking", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "error", err)
		hd.pause(hd.policy.InitialInterval)
		return OutcomeRetry, fmt.Errorf("hub: dead-lettering %s: %w", msg.UUID, err)
	}
	hd.release(scoped, token)
	h.tel.event(ctx, "dead_letter", attempts, cause)
	h.log.Warn("hub: message dead-lettered", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "reason", reason, "attempts", attempts, "error", cause)
	return OutcomeDLQ, nil
}

// attempt calls the handler once, through user middleware, containing
// panics.
func (hd *handler) attempt(ctx context.Context, msg *message.Message, d *delivery) (out []*message.Message, err error) {
	if hd.h.cfg.StuckAfter > 0 {
		hd.mu.Lock()
		d.attemptStart = time.Now()
		hd.mu.Unlock()
		defer func() {
			hd.mu.Lock()
			d.attemptStart = time.Time{}
			hd.mu.Unlock()
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			hd.h.log.Error("hub: handler panicked", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "panic", fmt.Sprint(r), "stack", string(stack))
			out, err = nil, retry.Permanent(&PanicError{Value: r, Stack: stack})
		}
	}()
	if hd.chain == nil {
		return hd.call(ctx, msg, d.value, d)
	}
	orig := msg.Context()
	msg.SetContext(context.WithValue(ctx, deliveryCtxKey{}, d))
	defer msg.SetContext(orig)
	return hd.chain(msg)
}

// completeTries bounds the attempts to mark a key done: a store that lost
// its connection (a restart) usually answers on a fresh one.
const completeTries = 5

// complete marks the key done, trying again with backoff on errors.
func (hd *handler) complete(ctx context.Context, scoped, token string) error {
	h := hd.h
	wait := hd.policy.InitialInterval
	var err error
	for try := 1; ; try++ {
		if err = h.store.Complete(h.workCtxOr(ctx), scoped, token, h.cfg.Retention); err == nil || try == completeTries {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-h.workCtx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, hd.policy.MaxInterval)
	}
}

// holdLease registers d's claim for renewal while it is handled.
func (hd *handler) holdLease(d *delivery, scoped, token string) {
	hd.mu.Lock()
	d.scoped, d.token, d.renewedAt = scoped, token, time.Now()
	hd.leases[d] = struct{}{}
	hd.mu.Unlock()
}

func (hd *handler) dropLease(d *delivery) {
	hd.mu.Lock()
	delete(hd.leases, d)
	hd.mu.Unlock()
}

func (hd *handler) leaseLost(d *delivery) bool {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return d.leaseLost
}

// renewLeases extends, every third of Config.Lease, the lease of every
// claim held longer than that, so a lease only needs to outlive a crashed
// worker's silence, not the longest handler attempt. Run starts it; it
// returns when the hub's work context ends.
func (h *Hub) renewLeases() {
	defer h.renewWG.Done()
	period := h.cfg.Lease / 3
	t := time.NewTicker(period)
	defer t.Stop()
	type claim struct {
		hd *handler
		d  *delivery
	}
	var due []claim
	for {
		select {
		case <-h.workCtx.Done():
			return
		case <-t.C:
		}
		due = due[:0]
		h.mu.Lock()
		hds := make([]*handler, 0, len(h.handlers))
		for _, hd := range h.handlers {
			hds = append(hds, hd)
		}
		h.mu.Unlock()
		now := time.Now()
		for _, hd := range hds {
			hd.mu.Lock()
			for d := range hd.leases {
				if !d.leaseLost && now.Sub(d.renewedAt) >= period {
					due = append(due, claim{hd, d})
				}
			}
			hd.mu.Unlock()
		}
		for _, c := range due {
			hd, d := c.hd, c.d
			hd.mu.Lock()
			scoped, token := d.scoped, d.token
			hd.mu.Unlock()
			ctx, cancel := context.WithTimeout(h.workCtx, period)
			err := h.store.Extend(ctx, scoped, token, h.cfg.Lease)
			cancel()
			hd.mu.Lock()
			switch {
			case err == nil:
				d.renewedAt = now
			case errors.Is(err, idempotency.ErrLeaseLost):
				if _, held := hd.leases[d]; held {
					d.leaseLost = true
					h.log.Warn("hub: lease lost while handling; another worker may handle the message too", "handler", hd.name, "key", scoped)
				}
			default:
				h.log.Warn("hub: extending lease failed; trying again", "handler", hd.name, "key", scoped, "error", err)
			}
			hd.mu.Unlock()
		}
	}
}

// PanicError is the permanent error a panicking handler turns into.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("hub: handler panicked: %v", e.Value) }

// wait sleeps d unless shutdown begins; it reports whether d passed.
func (hd *handler) wait(d time.Duration) bool {
	if d <= 0 {
		return !hd.h.stopping()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-hd.h.drainCtx.Done():
		return false
	}
}

// pause slows a nack loop against an unreachable dependency.
func (hd *handler) pause(d time.Duration) { hd.wait(d) }

func (hd *handler) release(scoped, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hd.h.store.Release(ctx, scoped, token); err != nil {
		hd.h.log.Warn("hub: releasing idempotency key failed; it frees when its lease ends", "handler", hd.name, "key", scoped, "error", err)
	}
}

// workCtxOr returns a context for bookkeeping after the handler returned:
// not cancelled by the handler's own deadline, only by Close.
func (h *Hub) workCtxOr(ctx context.Context) context.Context {
	if ctx.Err() == nil {
		return ctx
	}
	return h.workCtx
}

func attemptOf(md message.Metadata) int {
	a := 1
	if s := md.Get(KeyAttempt); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			a = n
		}
	}
	if s := md.Get(KeyDeliveryCount); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 1 {
			a += n - 1
		}
	}
	return a
}

func redeliveriesOf(md message.Metadata) int {
	if s := md.Get(KeyRedeliveries); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
