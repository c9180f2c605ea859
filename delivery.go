package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/retry"
)

// handler is the untyped unit a consumer runs for one Handle or Pipe.
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
	keyPrefix   string              // see scopePrefix
	started     bool                // its consumer was started; guarded by Hub.mu

	mu     sync.Mutex
	leases map[*delivery]struct{} // claims held now, renewed by Hub.renewLeases
}

// scopePrefix scopes idempotency keys by handler name, unambiguously: the
// name's length comes first, so handler "a" with key "b/1" and handler
// "a/b" with key "1" never share a store key.
func scopePrefix(name string) string { return strconv.Itoa(len(name)) + ":" + name + "/" }

// StoreKey is the key under which handler's idempotency claims on key are
// kept in the store: "<len(handler)>:<handler>/<key>". Operators and tests
// use it to look up or seed a store; handlers get theirs from ClaimFrom.
func StoreKey(handler, key string) string { return scopePrefix(handler) + key }

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

// handle runs one delivery through the hub's fixed steps and reports
// whether to ack it. Every outcome but OutcomeRetry acks: the message was
// handled, is a duplicate, was scheduled again, or was dead-lettered.
func (hd *handler) handle(msg *message.Message) (ack bool) {
	h := hd.h
	if tg := msg.Metadata.Get(KeyTargetGroup); tg != "" && tg != hd.name {
		h.tel.skipped(h.workCtx, hd)
		return true
	}
	d := &delivery{key: messageKey(msg), attempt: attemptOf(msg.Metadata)}
	ctx, obs := h.tel.startProcess(h.workCtx, hd, msg)
	outcome, err := hd.process(ctx, msg, d)
	if err == nil {
		err = d.lastErr
	}
	obs.end(ctx, outcome, err)
	hd.logOutcome(ctx, msg, d, outcome, err, time.Since(obs.start))
	h.count(outcome)
	return outcome != OutcomeRetry
}

// messageKey is the idempotency key of msg: hub-key, else the message ID,
// else (a foreign producer that set neither) a digest of the payload and
// the metadata that does not change between deliveries. It is never empty,
// so messages without IDs are never deduplicated against each other unless
// they are the same message.
func messageKey(msg *message.Message) string {
	if k := msg.Metadata.Get(KeyKey); k != "" {
		return k
	}
	if msg.UUID != "" {
		return msg.UUID
	}
	sum := sha256.New()
	keys := make([]string, 0, len(msg.Metadata))
	for k := range msg.Metadata {
		switch k {
		case KeyDeliveryCount, KeyAttempt, KeyRedeliveries, KeyTargetGroup, KeyFirstFailedAt, KeyNotBefore, KeyTraceParent, KeyTraceState:
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sum.Write([]byte(k))
		sum.Write([]byte{0})
		sum.Write([]byte(msg.Metadata[k]))
		sum.Write([]byte{0})
	}
	sum.Write(msg.Payload)
	return "sha256:" + hex.EncodeToString(sum.Sum(nil))
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

// opCtx is the context of one call the hub makes on its own behalf: not
// cancelled with the handler's context (bookkeeping after a handler
// returned must run even after Close), bounded by Config.OpTimeout.
func (h *Hub) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), h.cfg.OpTimeout)
}

func (hd *handler) process(ctx context.Context, msg *message.Message, d *delivery) (string, error) {
	h := hd.h
	if nb := parseTime(msg.Metadata.Get(KeyNotBefore)); !nb.IsZero() {
		if wait := time.Until(nb); wait > notBeforeSlack {
			// A delayed retry longer than the broker can delay in one hop
			// arrives early: schedule the rest without calling the handler.
			if err := hd.republish(ctx, msg, d, wait, d.attempt, redeliveriesOf(msg.Metadata)); err != nil {
				return hd.nackAfterPause(err)
			}
			return OutcomeDelayed, nil
		}
	}
	scoped := hd.keyPrefix + d.key
	// Nothing is handled yet: Close may cut the claim short (the message
	// is nacked, never acked).
	cctx, cancel := context.WithTimeout(ctx, h.cfg.OpTimeout)
	claim, err := h.store.Claim(cctx, scoped, h.cfg.Lease)
	cancel()
	if err != nil {
		h.log.Warn("hub: idempotency claim failed; nacking", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "error", err)
		return hd.nackAfterPause(fmt.Errorf("hub: claim %q: %w", d.key, err))
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
		if err := hd.republish(ctx, msg, d, wait, d.attempt, redeliveriesOf(msg.Metadata)); err != nil {
			return hd.nackAfterPause(err)
		}
		return OutcomeDelayed, nil
	}
	token := claim.Token
	hd.holdLease(d, scoped, token)
	defer hd.dropLease(d)
	ctx = context.WithValue(ctx, claimCtxKey{}, &Claim{Handler: hd.name, Key: d.key, StoreKey: scoped, Token: token})

	v, err := hd.safeDecode(msg)
	if err != nil {
		d.lastErr = err
		return hd.apply(ctx, msg, d, scoped, token, decision{act: actDeadLetter, reason: ReasonDecode}, err, d.attempt-1)
	}
	d.value = v

	var bo interface{ NextBackOff() time.Duration }
	next := func() time.Duration {
		if bo == nil {
			bo = hd.policy.NewBackOff()
		}
		return bo.NextBackOff()
	}
	for try := 1; ; try++ {
		out, err := hd.attempt(ctx, msg, d)
		if err == nil && len(out) > 0 {
			pctx, cancel := h.opCtx(ctx)
			if perr := h.publishMessages(pctx, hd.outTopic, out); perr != nil {
				err = fmt.Errorf("hub: publishing %d output(s) to %q: %w", len(out), hd.outTopic, perr)
			}
			cancel()
		}
		if err != nil {
			d.lastErr = err
		}
		dec := decide(hd.policy, try, redeliveriesOf(msg.Metadata), err, h.stopping(), next)
		if dec.act != actRetry {
			return hd.apply(ctx, msg, d, scoped, token, dec, err, d.attempt)
		}
		h.tel.event(ctx, "retry", d.attempt, err)
		h.log.Debug("hub: handler failed; retrying", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "attempt", d.attempt, "wait", dec.delay, "error", err)
		if !hd.wait(dec.delay) {
			hd.release(ctx, scoped, token)
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

// apply carries out a decision: the one place a delivery's key is
// completed or released after its handler ran.
func (hd *handler) apply(ctx context.Context, msg *message.Message, d *delivery, scoped, token string, dec decision, cause error, attempts int) (string, error) {
	h := hd.h
	switch dec.act {
	case actAck:
		if err := hd.complete(ctx, scoped, token); err != nil {
			// The handler's work is done. Acking without Complete risks a
			// second call only if the message comes again; nacking would
			// make one certain.
			h.log.Error("hub: completing idempotency key failed; acking anyway", "handler", hd.name, "key", d.key, "error", err)
		}
		return OutcomeAck, nil
	case actNack:
		hd.release(ctx, scoped, token)
		return OutcomeRetry, cause
	case actDelay:
		// Released first, so the delayed copy can claim the key however
		// soon it arrives.
		hd.release(ctx, scoped, token)
		n := redeliveriesOf(msg.Metadata)
		if err := hd.republish(ctx, msg, d, dec.delay, d.attempt+1, n+1, cause); err != nil {
			if errors.Is(err, broker.ErrMessageTooLarge) {
				// It cannot travel again with the retry's metadata: a
				// dead letter (trimmed to fit) is where it can end.
				return hd.deadLetter(ctx, msg, d, scoped, "", ReasonTooLarge, fmt.Errorf("%w (after: %w)", err, cause), attempts)
			}
			if deliveriesOf(msg.Metadata) >= scheduleFailuresMax {
				// The broker keeps refusing the delayed retry: stop
				// looping and dead-letter (which needs the broker too; if
				// that fails as well the message stays, nacked slowly).
				return hd.deadLetter(ctx, msg, d, scoped, "", ReasonScheduleFailed, fmt.Errorf("%w (after: %w)", err, cause), attempts)
			}
			return hd.nackAfterPause(err)
		}
		h.tel.event(ctx, "delayed_retry", d.attempt, cause)
		return OutcomeDelayed, nil
	default:
		var pe *PanicError
		if dec.reason == ReasonPanic && errors.As(cause, &pe) {
			cause = pe
		}
		return hd.deadLetter(ctx, msg, d, scoped, token, dec.reason, cause, attempts)
	}
}

// nackAfterPause nacks after a pause, so a dependency that fails every
// delivery is not hammered in a loop.
func (hd *handler) nackAfterPause(err error) (string, error) {
	hd.pause(hd.policy.InitialInterval)
	return OutcomeRetry, err
}

// scheduleFailuresMax is how many deliveries of one message may fail to
// schedule their delayed retry before the hub dead-letters it instead.
const scheduleFailuresMax = 5

// notBeforeSlack is how early a message with hub-not-before may arrive and
// still be handled rather than scheduled again.
const notBeforeSlack = 50 * time.Millisecond

// safeDecode decodes msg, turning a panic in user code on the way (an
// upcaster, a Codec, an Encrypter) into a decode error.
func (hd *handler) safeDecode(msg *message.Message) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			hd.h.log.Error("hub: decoding panicked", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "panic", fmt.Sprint(r), "stack", string(stack))
			v, err = nil, fmt.Errorf("%w: %w", ErrDecode, &PanicError{Value: r, Stack: stack, In: "decoding"})
		}
	}()
	return hd.decode(msg)
}

// republish sends a copy of msg back to this handler's group after delay.
// A delay longer than the broker can schedule in one hop is chained: the
// copy carries hub-not-before and is scheduled again when it arrives early.
func (hd *handler) republish(ctx context.Context, msg *message.Message, d *delivery, delay time.Duration, attempt, redeliveries int, cause ...error) error {
	h := hd.h
	m := message.NewMessage(msg.UUID, msg.Payload)
	m.Metadata = make(message.Metadata, len(msg.Metadata)+5)
	for k, v := range msg.Metadata {
		m.Metadata[k] = v
	}
	delete(m.Metadata, KeyDeliveryCount)
	delete(m.Metadata, KeyNotBefore)
	m.Metadata[KeyKey] = d.key
	m.Metadata[KeyAttempt] = strconv.Itoa(attempt)
	m.Metadata[KeyRedeliveries] = strconv.Itoa(redeliveries)
	if len(cause) > 0 && m.Metadata[KeyFirstFailedAt] == "" {
		m.Metadata[KeyFirstFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if lim, ok := h.b.(broker.DelayLimiter); ok {
		if most := lim.MaxDelay(); most > 0 && delay > most {
			m.Metadata[KeyNotBefore] = time.Now().Add(delay).UTC().Format(time.RFC3339Nano)
			delay = most
		}
	}
	pctx, cancel := h.opCtx(ctx)
	defer cancel()
	if dl, ok := h.b.(broker.Delayer); ok {
		pctx, obs := h.tel.startPublish(pctx, hd.topic, m)
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
	pctx, obs := h.tel.startPublish(pctx, hd.topic, m)
	err := broker.PublishContext(pctx, h.b, hd.topic, m)
	obs.end(pctx, 1, err)
	if err != nil {
		return fmt.Errorf("hub: publishing retry of %s: %w", msg.UUID, err)
	}
	return nil
}

// deadLetterErrorMax bounds hub-dlq-error; a letter refused for its size is
// tried again with less (see letterAttempts).
const deadLetterErrorMax = 4096

// deadLetter publishes msg to the DLQ topic with the reason, then releases
// the key so a replay can be handled. A failed DLQ publish nacks after a
// pause. A letter the broker refuses for its size is trimmed step by step
// (the error text, then the original metadata, then the payload, whose size
// and digest stay in the letter) so that oversize ends in a letter, never
// in a loop.
func (hd *handler) deadLetter(ctx context.Context, msg *message.Message, d *delivery, scoped, token, reason string, cause error, attempts int) (string, error) {
	h := hd.h
	topic := h.DeadLetterTopic(hd.topic)
	var err error
	for trim := range letterTrims {
		m := hd.letter(msg, d, reason, cause, attempts, trim)
		pctx, cancel := h.opCtx(ctx)
		pctx, obs := h.tel.startPublish(pctx, topic, m)
		err = broker.PublishContext(pctx, h.b, topic, m)
		obs.end(pctx, 1, err)
		cancel()
		if err == nil {
			if trim > 0 {
				h.log.Error("hub: dead letter trimmed to fit the broker's size limit", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "trim", letterTrimNames[trim])
			}
			break
		}
		if !errors.Is(err, broker.ErrMessageTooLarge) {
			break
		}
	}
	hd.release(ctx, scoped, token)
	if err != nil {
		h.log.Error("hub: dead-letter publish failed; nacking", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "error", err)
		return hd.nackAfterPause(fmt.Errorf("hub: dead-lettering %s: %w", msg.UUID, err))
	}
	h.tel.event(ctx, "dead_letter", attempts, cause)
	h.log.Warn("hub: message dead-lettered", "handler", hd.name, "topic", hd.topic, "message_id", msg.UUID, "reason", reason, "attempts", attempts, "error", cause)
	return OutcomeDLQ, nil
}

// Letter trims, in the order tried.
const (
	trimNone     = iota
	trimError    // hub-dlq-error cut to 256 bytes
	trimMetadata // and only the hub's own metadata kept
	trimPayload  // and the payload left out (its size and digest kept)
	letterTrims
)

var letterTrimNames = [letterTrims]string{"none", "error", "metadata", "payload"}

func (hd *handler) letter(msg *message.Message, d *delivery, reason string, cause error, attempts, trim int) *message.Message {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	id := msg.UUID
	if id == "" {
		id = d.key
	}
	m := message.NewMessage(id, msg.Payload)
	m.Metadata = make(message.Metadata, len(msg.Metadata)+8)
	for k, v := range msg.Metadata {
		if trim >= trimMetadata && !isHubKey(k) {
			continue
		}
		m.Metadata[k] = v
	}
	delete(m.Metadata, KeyDeliveryCount)
	delete(m.Metadata, KeyTargetGroup)
	delete(m.Metadata, KeyNotBefore)
	errText := truncate(cause.Error(), deadLetterErrorMax)
	if trim >= trimError {
		errText = truncate(errText, 256)
	}
	m.Metadata[KeyDLQReason] = reason
	m.Metadata[KeyDLQError] = errText
	m.Metadata[KeyOriginalTopic] = hd.topic
	m.Metadata[KeyHandler] = hd.name
	m.Metadata[KeyAttempts] = strconv.Itoa(max(attempts, 0))
	m.Metadata[KeyFailedAt] = now
	if m.Metadata[KeyFirstFailedAt] == "" {
		m.Metadata[KeyFirstFailedAt] = now
	}
	m.Metadata[KeyKey] = d.key
	if trim >= trimPayload {
		sum := sha256.Sum256(msg.Payload)
		m.Payload = nil
		m.Metadata[KeyDLQPayloadOmitted] = strconv.Itoa(len(msg.Payload)) + " bytes, sha256:" + hex.EncodeToString(sum[:])
	}
	return m
}

func isHubKey(k string) bool {
	return len(k) > 4 && k[:4] == "hub-" || k == KeyCorrelationID || k == KeyTraceParent || k == KeyTraceState
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

// complete marks the key done, trying again with backoff on errors, all
// within one OpTimeout and whatever happened to the handler's context.
func (hd *handler) complete(ctx context.Context, scoped, token string) error {
	h := hd.h
	cctx, cancel := h.opCtx(ctx)
	defer cancel()
	wait := hd.policy.InitialInterval
	var err error
	for try := 1; ; try++ {
		if err = h.store.Complete(cctx, scoped, token, h.cfg.Retention); err == nil || try == completeTries || errors.Is(err, idempotency.ErrLeaseLost) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-cctx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, hd.policy.MaxInterval)
	}
}

// release frees the key so another delivery can claim it now rather than
// when the lease ends. An empty token means it was released already.
func (hd *handler) release(ctx context.Context, scoped, token string) {
	if token == "" {
		return
	}
	rctx, cancel := hd.h.opCtx(ctx)
	defer cancel()
	if err := hd.h.store.Release(rctx, scoped, token); err != nil {
		hd.h.log.Warn("hub: releasing idempotency key failed; it frees when its lease ends", "handler", hd.name, "key", scoped, "error", err)
	}
}

// PanicError is the permanent error a panicking handler (or decoder) turns
// into.
type PanicError struct {
	Value any
	Stack []byte
	// In names what panicked: "" for the handler, "decoding" for a Codec,
	// an upcaster or an Encrypter.
	In string
}

func (e *PanicError) Error() string {
	if e.In != "" {
		return fmt.Sprintf("hub: %s panicked: %v", e.In, e.Value)
	}
	return fmt.Sprintf("hub: handler panicked: %v", e.Value)
}

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

func attemptOf(md message.Metadata) int {
	a := 1
	if s := md.Get(KeyAttempt); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			a = n
		}
	}
	if n := deliveriesOf(md); n > 1 {
		a += n - 1
	}
	return a
}

// deliveriesOf is the broker's delivery count of this copy (1 the first
// time).
func deliveriesOf(md message.Metadata) int {
	if s := md.Get(KeyDeliveryCount); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 1 {
			return n
		}
	}
	return 1
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
