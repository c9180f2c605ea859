package amqp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/internal/testenv"
)

// The header frame size is computed exactly: a message whose header frame
// fills the negotiated frame_max to the byte is accepted by RabbitMQ (had
// the computation been short, RabbitMQ would close the connection), and
// one byte more is refused before sending.
func TestHeaderFrameExactLimit(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	b, err := New(Config{URL: testenv.AMQPURL(), Transient: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	frameMax := int(b.conn.frameMax.Load())
	require.Positive(t, frameMax, "frame_max negotiated")
	topic := "hubtest.frame." + watermill.NewShortUUID()
	gen := func() uint64 { b.conn.mu.Lock(); defer b.conn.mu.Unlock(); return b.conn.gen }
	before := gen()

	sized := func(extra int) *message.Message {
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		m.Metadata.Set(keyContentType, "application/json")
		m.Metadata.Set("pad", "")
		p := b.marshal(m)
		m.Metadata.Set("pad", strings.Repeat("p", frameMax-frameOverhead-headerFrameSize(&p)+extra))
		p = b.marshal(m)
		require.Equal(t, frameMax-frameOverhead+extra, headerFrameSize(&p))
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := b.Subscribe(ctx, topic)
	require.NoError(t, err)
	defer func() {
		c, _, err := b.conn.get(ctx)
		if err == nil {
			if dc, err := c.Channel(); err == nil {
				_, _ = dc.QueueDelete(topic, false, false, false)
				_ = dc.ExchangeDelete(topic, false, false)
			}
		}
	}()

	err = b.PublishContext(ctx, topic, sized(1))
	require.ErrorIs(t, err, broker.ErrMessageTooLarge)

	fits := sized(0)
	require.NoError(t, b.PublishContext(ctx, topic, fits))
	select {
	case m := <-ch:
		require.Equal(t, fits.UUID, m.UUID)
		require.Equal(t, fits.Metadata.Get("pad"), m.Metadata.Get("pad"))
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the message at the limit was not delivered")
	}
	require.Equal(t, before, gen(), "no reconnection: RabbitMQ accepted the frame")
}
