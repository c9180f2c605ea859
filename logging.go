package hub

import (
	"fmt"
	"sync/atomic"
)

// counts are the hub's lifetime delivery counts, for its drain log line.
type counts struct {
	ack, retry, delayed, dlq, duplicate, skipped atomic.Int64
}

func (h *Hub) count(outcome string) {
	c := &h.counts
	switch outcome {
	case OutcomeAck:
		c.ack.Add(1)
	case OutcomeRetry:
		c.retry.Add(1)
	case OutcomeDelayed:
		c.delayed.Add(1)
	case OutcomeDLQ:
		c.dlq.Add(1)
	case OutcomeDuplicate:
		c.duplicate.Add(1)
	case OutcomeSkipped:
		c.skipped.Add(1)
	}
}

// logStart logs, at INFO, one line per handler Run started.
func (h *Hub) logStart(hds []*handler) {
	for _, hd := range hds {
		h.logConsumer(hd)
	}
}

// logConsumer logs what a handler consumes and from where.
func (h *Hub) logConsumer(hd *handler) {
	attrs := []any{"handler", hd.name, "topic", hd.topic, "group", hd.name,
		"broker", h.b.Name(), "concurrency", hd.concurrency, "idempotency", fmt.Sprintf("%T", h.store)}
	if q, ok := h.b.(interface {
		QueueName(topic, group string) string
	}); ok {
		attrs = append(attrs, "queue", q.QueueName(hd.topic, hd.name))
	}
	if hd.outTopic != "" {
		attrs = append(attrs, "publishes_to", hd.outTopic)
	}
	h.log.Info("hub: consuming", attrs...)
}

// logDrainBegin and logDrained bracket a drain at INFO.
func (h *Hub) logDrainBegin() {
	h.log.Info("hub: draining", "handlers", len(h.order))
}

func (h *Hub) logDrained() {
	c := &h.counts
	h.log.Info("hub: drained", "ack", c.ack.Load(), "retry", c.retry.Load(), "delayed", c.delayed.Load(),
		"dlq", c.dlq.Load(), "duplicate", c.duplicate.Load(), "skipped", c.skipped.Load())
}
