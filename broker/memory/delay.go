package memory

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/harvesthub/hub/broker"
)

// delayState holds the delayed messages in a min-heap by due time. One
// scheduler goroutine with one timer, started by the first PublishDelayed,
// moves them to their queues when due.
type delayState struct {
	mu      sync.Mutex
	items   delayHeap
	pending int    // in items or being moved to their queues
	seq     uint64 // ties broken in publish order
	started bool
	wake    chan struct{} // cap 1: an earlier item was added
}

type delayed struct {
	due   time.Time
	seq   uint64
	topic string
	group string // empty: every group of the topic
	msg   *message.Message
}

type delayHeap []delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*h = old[:len(old)-1]
	return d
}

func (d *delayState) init() { d.wake = make(chan struct{}, 1) }

// drop forgets every delayed message; the scheduler must have stopped.
func (d *delayState) drop() {
	d.mu.Lock()
	d.items = nil
	d.pending = 0
	d.mu.Unlock()
}

// PublishDelayed delivers a copy of each message to topic once delay has
// passed: to the consumer group named group only (declaring it then if
// needed), or to every group of the topic when group is empty, as Publish
// would. It returns once the messages are scheduled; a timer, not a
// goroutine per message, waits for them.
//
// At most [Config.MaxDelayed] messages wait at once: beyond that it returns
// [ErrQueueFull] and schedules none of msgs. A due message enters its queue
// even when the queue is full. Delayed messages not yet due when the broker
// is closed are dropped. A message over [Config.MaxMessageSize] fails the
// call, as in Publish.
func (b *Broker) PublishDelayed(ctx context.Context, topic, group string, delay time.Duration, msgs ...*message.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: publish delayed to topic %q: %w", topic, err)
	}
	if err := b.checkSize(topic, msgs); err != nil {
		return err
	}
	d := &b.delay
	due := time.Now().Add(delay)

	// Lock order: b.mu before d.mu, so that the scheduler's wg.Add cannot
	// race Close.
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed.Load() {
		return fmt.Errorf("memory: publish delayed to topic %q: %w", topic, broker.ErrClosed)
	}
	d.mu.Lock()
	if d.pending+len(msgs) > b.cfg.MaxDelayed {
		pending := d.pending
		d.mu.Unlock()
		return fmt.Errorf("memory: publish delayed to topic %q group %q: %d of %d delayed messages pending: %w",
			topic, group, pending, b.cfg.MaxDelayed, ErrQueueFull)
	}
	earliest := len(d.items) == 0 || due.Before(d.items[0].due)
	for _, m := range msgs {
		d.seq++
		heap.Push(&d.items, delayed{due: due, seq: d.seq, topic: topic, group: group, msg: m.Copy()})
	}
	d.pending += len(msgs)
	if !d.started {
		d.started = true
		b.wg.Add(1)
		go b.schedule()
	}
	d.mu.Unlock()
	if earliest {
		signal(d.wake)
	}
	b.changed()
	return nil
}

// schedule moves delayed messages to their queues when due, until Close.
func (b *Broker) schedule() {
	defer b.wg.Done()
	d := &b.delay
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []delayed
	for {
		d.mu.Lock()
		now := time.Now()
		for len(d.items) > 0 && !d.items[0].due.After(now) {
			due = append(due, heap.Pop(&d.items).(delayed))
		}
		wait := time.Duration(-1)
		if len(d.items) > 0 {
			wait = d.items[0].due.Sub(now)
		}
		d.mu.Unlock()

		for i := range due {
			b.fire(due[i])
			due[i] = delayed{}
		}
		due = due[:0]

		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-timer.C:
		case <-d.wake:
		case <-b.closing:
			return
		}
	}
}

// fire queues a due delayed message, then stops counting it as pending.
func (b *Broker) fire(it delayed) {
	t := b.topic(it.topic)
	if it.group != "" {
		t.declare(it.group).putBack(it.msg, false, false)
	} else {
		groups := *t.groups.Load()
		for i, g := range groups {
			m := it.msg
			if i > 0 {
				m = it.msg.Copy()
			}
			g.putBack(m, false, false)
		}
	}
	b.delay.mu.Lock()
	b.delay.pending--
	b.delay.mu.Unlock()
	b.changed()
}
