package memory

import "github.com/ThreeDotsLabs/watermill/message"

// ring is a FIFO of messages that grows by doubling (its length is a power
// of two) and never shrinks. The zero ring is empty.
type ring struct {
	buf  []*message.Message
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) grow() {
	size := max(16, 2*len(r.buf))
	buf := make([]*message.Message, size)
	for i := range r.n {
		buf[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = buf, 0
}

func (r *ring) pushBack(m *message.Message) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = m
	r.n++
}

func (r *ring) pushFront(m *message.Message) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1) & (len(r.buf) - 1)
	r.buf[r.head] = m
	r.n++
}

// popFront removes the oldest message; the ring must not be empty.
func (r *ring) popFront() *message.Message {
	m := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return m
}
