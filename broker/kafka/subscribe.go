package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/harvesthub/hub/broker"
)

// Subscribe joins the topic's default group (named after the topic).
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return b.SubscribeGroup(ctx, topic, broker.Group{})
}

// SubscribeGroup joins the consumer group g of topic: a Kafka consumer
// group named "<topic>~<group>" over topic and its retry topics. Within the
// group, partitions are spread over the subscriptions; up to g.Prefetch
// messages are delivered and not yet acked at once.
//
// Offsets are committed only for acked messages, and only up to the first
// message not acked in its partition: a message acked out of order is
// committed once every message before it is. A nacked message is delivered
// again by this subscription, before any later message of its partition
// (with hub-delivery-count incremented). A message left unacked when the
// subscription ends, or whose partition moved to another member, is not
// committed: the group receives it again.
func (b *Broker) SubscribeGroup(ctx context.Context, topic string, g broker.Group) (<-chan *message.Message, error) {
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	if g.Prefetch < 0 {
		return nil, fmt.Errorf("kafka: Group.Prefetch %d must not be negative", g.Prefetch)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, broker.ErrClosed
	}
	b.wg.Add(1)
	b.mu.Unlock()
	s := &subscription{
		b:        b,
		topic:    topic,
		group:    broker.GroupName(topic, g.Name),
		prefetch: max(g.Prefetch, 1),
		out:      make(chan *message.Message),
		events:   make(chan ackEvent),
		polled:   make(chan kgo.Fetches),
		pollReq:  make(chan int),
		parts:    map[partKey]*tracker{},
		waiting:  map[partKey][]*entry{},
		held:     map[*entry]*message.Message{},
	}
	if err := s.start(ctx); err != nil {
		b.wg.Done()
		return nil, err
	}
	return s.out, nil
}

type partKey struct {
	topic     string
	partition int32
}

// tracker follows the records of one assigned partition, in offset order,
// until they are acked and committed. A new assignment of the partition
// gets a new tracker; acks of the old one's records are then ignored.
type tracker struct {
	key     partKey
	live    bool
	pending []*entry // not yet committed, offset order
}

// entry is one record on its way through the subscription.
type entry struct {
	rec        *kgo.Record
	tr         *tracker
	done       bool // acked, or skipped: may be committed
	due        time.Time
	deliveries int
}

type ackEvent struct {
	e   *entry
	ack bool
}

type subscription struct {
	b        *Broker
	topic    string
	group    string
	prefetch int
	cl       *kgo.Client

	out     chan *message.Message
	events  chan ackEvent
	polled  chan kgo.Fetches
	pollReq chan int

	mu      sync.Mutex // parts, waiting, tracker fields (the group callbacks run on franz-go's goroutines)
	parts   map[partKey]*tracker
	waiting map[partKey][]*entry // delayed records not yet due, per retry partition, in order

	// Owned by the run goroutine.
	ready     []*entry // to deliver, in order
	inflight  int
	held      map[*entry]*message.Message // delivered, not yet settled
	watchers  sync.WaitGroup
	stopWatch chan struct{} // closed when the subscription gives up on unacked messages
}

func (s *subscription) start(ctx context.Context) error {
	topics := allTopics(s.topic)
	if err := s.b.ensureTopics(ctx, topics...); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(s.b.opts,
		kgo.ConsumerGroup(groupID(s.topic, s.group)),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(s.b.cfg.CommitInterval),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(s.b.cfg.SessionTimeout),
		kgo.HeartbeatInterval(max(s.b.cfg.SessionTimeout/10, 100*time.Millisecond)),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.FetchMaxWait(time.Second),
		kgo.FetchMaxBytes(int32(max(4*s.b.cfg.MaxMessageBytes, 16<<20))),
		kgo.FetchMaxPartitionBytes(int32(max(s.b.cfg.MaxMessageBytes, 1<<20))),
	)...)
	if err != nil {
		return fmt.Errorf("kafka: subscribe %s: %w", s.topic, err)
	}
	s.cl = cl
	s.stopWatch = make(chan struct{})
	pollCtx, cancelPoll := context.WithCancel(context.Background())
	var poller sync.WaitGroup
	poller.Add(1)
	go func() {
		defer poller.Done()
		s.poll(pollCtx)
	}()
	go func() {
		defer s.b.wg.Done()
		s.run(ctx, cancelPoll)
		poller.Wait()
		s.finish()
	}()
	return nil
}

// poll fetches up to the requested number of records whenever the run
// loop asks, until ctx ends.
func (s *subscription) poll(ctx context.Context) {
	for {
		var n int
		select {
		case n = <-s.pollReq:
		case <-ctx.Done():
			return
		}
		f := s.cl.PollRecords(ctx, n)
		select {
		case s.polled <- f:
		case <-ctx.Done():
			s.cl.AllowRebalance()
			return
		}
	}
}

func (s *subscription) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			k := partKey{t, p}
			if old := s.parts[k]; old != nil {
				old.live = false
			}
			s.parts[k] = &tracker{key: k, live: true}
		}
	}
}

// revoked commits what was acked, then forgets the partitions: messages of
// theirs still unacked go to their new owner.
func (s *subscription) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	s.drop(m)
	ctx, cancel := context.WithTimeout(ctx, s.b.cfg.RequestTimeout)
	defer cancel()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		s.b.cfg.Logger.Warn("kafka: commit on revoke failed; the group will receive acked messages again", "group", s.group, "error", err)
	}
}

func (s *subscription) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) { s.drop(m) }

func (s *subscription) drop(m map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var resume map[string][]int32
	for t, ps := range m {
		for _, p := range ps {
			k := partKey{t, p}
			if tr := s.parts[k]; tr != nil {
				tr.live = false
				delete(s.parts, k)
			}
			if _, ok := s.waiting[k]; ok {
				delete(s.waiting, k)
				if resume == nil {
					resume = map[string][]int32{}
				}
				resume[t] = append(resume[t], p)
			}
		}
	}
	if resume != nil {
		s.cl.ResumeFetchPartitions(resume)
	}
}

// run is the subscription's loop: it asks for records while slots are
// free, delivers them, and turns acks into commits.
func (s *subscription) run(ctx context.Context, cancelPoll context.CancelFunc) {
	defer cancelPoll()
	polling := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	stopping := false
	for {
		if !stopping {
			if !s.deliver(ctx) {
				stopping = true
			}
		}
		if stopping && s.inflight == 0 {
			return
		}
		if !stopping && !polling && s.inflight+len(s.ready) < s.prefetch {
			select {
			case s.pollReq <- s.prefetch - s.inflight - len(s.ready):
				polling = true
			case <-ctx.Done():
				stopping = true
				continue
			case <-s.b.closing:
				return
			}
		}
		var ctxDone <-chan struct{}
		if !stopping {
			ctxDone = ctx.Done()
		}
		s.armTimer(timer)
		select {
		case ev := <-s.events:
			s.settle(ev)
		case f := <-s.polled:
			polling = false
			s.take(f)
			s.cl.AllowRebalance()
		case <-timer.C:
			s.wake()
		case <-ctxDone:
			stopping = true
			// Records fetched and not delivered are not committed: the
			// group receives them again.
			s.ready = nil
			cancelPoll()
		case <-s.b.closing:
			return
		}
	}
}

// deliver hands ready records to the subscriber while slots are free. It
// returns false once ctx ended.
func (s *subscription) deliver(ctx context.Context) bool {
	for s.inflight < s.prefetch && len(s.ready) > 0 {
		e := s.ready[0]
		s.ready = s.ready[1:]
		s.mu.Lock()
		live := e.tr.live
		s.mu.Unlock()
		if !live {
			continue
		}
		e.deliveries++
		m := s.message(e)
		// The message's context ends once it is acked or nacked, or the
		// subscription gives up on it.
		mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.SetContext(mctx)
		for sent := false; !sent; {
			select {
			case s.out <- m:
				sent = true
			case ev := <-s.events:
				s.settle(ev)
			case <-ctx.Done():
				cancel()
				s.ready = nil
				return false
			case <-s.b.closing:
				cancel()
				s.ready = nil
				return false
			}
		}
		s.inflight++
		s.held[e] = m
		s.watchers.Add(1)
		go s.watch(e, m, cancel)
	}
	return true
}

func (s *subscription) watch(e *entry, m *message.Message, cancel context.CancelFunc) {
	defer s.watchers.Done()
	defer cancel()
	var ack bool
	select {
	case <-m.Acked():
		ack = true
	case <-m.Nacked():
	case <-s.stopWatch:
		return
	}
	select {
	case s.events <- ackEvent{e, ack}:
	case <-s.stopWatch:
	}
}

// settle applies an ack or a nack.
func (s *subscription) settle(ev ackEvent) {
	s.inflight--
	e := ev.e
	delete(s.held, e)
	if !ev.ack {
		s.mu.Lock()
		live := e.tr.live
		s.mu.Unlock()
		if live {
			// Before any later record: a redelivery keeps the order.
			s.ready = append([]*entry{e}, s.ready...)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.done = true
	s.advance(e.tr)
}

// advance marks for commit the acked prefix of tr's records. s.mu is held.
func (s *subscription) advance(tr *tracker) {
	if !tr.live {
		return
	}
	var last *entry
	for len(tr.pending) > 0 && tr.pending[0].done {
		last = tr.pending[0]
		tr.pending[0] = nil
		tr.pending = tr.pending[1:]
	}
	if last == nil {
		return
	}
	s.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
		tr.key.topic: {tr.key.partition: {Epoch: last.rec.LeaderEpoch, Offset: last.rec.Offset + 1}},
	})
}

// take registers polled records: each joins its partition's tracker, and
// is delivered, skipped (another group's delayed retry) or held until due.
func (s *subscription) take(f kgo.Fetches) {
	f.EachError(func(t string, p int32, err error) {
		if !errors.Is(err, context.Canceled) {
			s.b.cfg.Logger.Warn("kafka: fetch failed", "topic", t, "partition", p, "group", s.group, "error", err)
		}
	})
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var pause map[string][]int32
	f.EachRecord(func(r *kgo.Record) {
		k := partKey{r.Topic, r.Partition}
		tr := s.parts[k]
		if tr == nil {
			return // not ours any more: its new owner reads it
		}
		e := &entry{rec: r, tr: tr}
		tr.pending = append(tr.pending, e)
		var tg, due string
		for _, h := range r.Headers {
			switch h.Key {
			case keyTargetGroup:
				tg = string(h.Value)
			case headerDue:
				due = string(h.Value)
			}
		}
		if tg != "" && tg != s.group {
			e.done = true
			s.advance(tr)
			return
		}
		if due != "" {
			if ms, err := strconv.ParseInt(due, 10, 64); err == nil {
				e.due = time.UnixMilli(ms)
			}
		}
		if w, ok := s.waiting[k]; ok || e.due.After(now) {
			if !ok {
				if pause == nil {
					pause = map[string][]int32{}
				}
				pause[k.topic] = append(pause[k.topic], k.partition)
			}
			s.waiting[k] = append(w, e)
			return
		}
		s.ready = append(s.ready, e)
	})
	if pause != nil {
		s.cl.PauseFetchPartitions(pause)
	}
}

// wake moves the delayed records now due to the ready queue, in order, and
// resumes the partitions with none left waiting.
func (s *subscription) wake() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var resume map[string][]int32
	for k, w := range s.waiting {
		i := 0
		for i < len(w) && !w[i].due.After(now) {
			s.ready = append(s.ready, w[i])
			i++
		}
		if i == len(w) {
			delete(s.waiting, k)
			if resume == nil {
				resume = map[string][]int32{}
			}
			resume[k.topic] = append(resume[k.topic], k.partition)
		} else {
			s.waiting[k] = w[i:]
		}
	}
	if resume != nil {
		s.cl.ResumeFetchPartitions(resume)
	}
}

// armTimer sets timer to the earliest due time of a waiting record.
func (s *subscription) armTimer(timer *time.Timer) {
	s.mu.Lock()
	var next time.Time
	for _, w := range s.waiting {
		if d := w[0].due; next.IsZero() || d.Before(next) {
			next = d
		}
	}
	s.mu.Unlock()
	if !timer.Stop() {
		select {
		case <-timer.C:
		default:
		}
	}
	if !next.IsZero() {
		timer.Reset(max(time.Until(next), 0))
	}
}

// message builds the Watermill message of e's record.
func (s *subscription) message(e *entry) *message.Message {
	r := e.rec
	uuid := ""
	md := make(message.Metadata, len(r.Headers))
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderUUID:
			uuid = string(h.Value)
		case headerDue:
		default:
			md[h.Key] = string(h.Value)
		}
	}
	// A record without a UUID (a foreign producer) keeps an empty one, as
	// on every broker: the hub keys it by its content.
	if e.deliveries > 1 {
		md[keyDeliveryCount] = strconv.Itoa(e.deliveries)
	}
	m := message.NewMessage(uuid, r.Value)
	m.Metadata = md
	return m
}

// finish commits what was acked and leaves the group. Unacked messages
// are not committed.
func (s *subscription) finish() {
	close(s.stopWatch)
	s.watchers.Wait()
	// Acks that raced with the end still count.
	for e, m := range s.held {
		select {
		case <-m.Acked():
			s.settle(ackEvent{e, true})
		default:
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.b.cfg.RequestTimeout)
	defer cancel()
	if err := s.cl.CommitMarkedOffsets(ctx); err != nil {
		s.b.cfg.Logger.Warn("kafka: final commit failed; the group will receive acked messages again", "group", s.group, "error", err)
	}
	s.cl.AllowRebalance()
	if err := s.cl.LeaveGroupContext(ctx); err != nil && !errors.Is(err, context.Canceled) {
		s.b.cfg.Logger.Warn("kafka: leave group", "group", s.group, "error", err)
	}
	s.cl.Close()
	close(s.out)
}
