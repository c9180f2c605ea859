package amqp_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
)

// TestMutualTLS connects to the private node's TLS listener, which requires
// a client certificate signed by the test CA.
func TestMutualTLS(t *testing.T) {
	node.require(t)
	files := func(cert string) *broker.TLSFiles {
		f := &broker.TLSFiles{CA: node.file("ca.pem")}
		if cert != "" {
			f.Cert, f.Key = node.file(cert+".pem"), node.file(cert+".key")
		}
		return f
	}

	t.Run("valid client certificate", func(t *testing.T) {
		b := newBroker(t, amqp.Config{URL: node.tlsURL(), TLS: files("client")})
		require.NoError(t, b.Ping(context.Background()))
		topic := uniqueTopic(t, node.url())
		sub, err := b.Subscribe(context.Background(), topic)
		require.NoError(t, err)
		msg := message.NewMessage(watermill.NewUUID(), []byte("over TLS"))
		require.NoError(t, b.Publish(topic, msg))
		select {
		case m := <-sub:
			require.Equal(t, msg.UUID, m.UUID)
			require.Equal(t, "over TLS", string(m.Payload))
			m.Ack()
		case <-time.After(waitFor):
			t.Fatal("no message over TLS")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		_, err := amqp.New(amqp.Config{URL: node.tlsURL(), TLS: files(""), DialTimeout: 5 * time.Second})
		require.ErrorContains(t, err, "amqp: connect to amqps://")
		t.Log(err)
	})
	t.Run("client certificate of another CA", func(t *testing.T) {
		_, err := amqp.New(amqp.Config{URL: node.tlsURL(), TLS: files("other-client"), DialTimeout: 5 * time.Second})
		require.ErrorContains(t, err, "amqp: connect to amqps://")
		t.Log(err)
	})
	t.Run("server not signed by the trusted CA", func(t *testing.T) {
		f := files("client")
		f.CA = node.file("other-client.pem") // not the server's CA
		_, err := amqp.New(amqp.Config{URL: node.tlsURL(), TLS: f, DialTimeout: 5 * time.Second})
		require.ErrorContains(t, err, "certificate")
	})
}

// TestRestartMidStream restarts the private node while 10,000 messages are
// published and consumed: every message whose publish returned nil is
// received. Publishes that fail are counted and retried; duplicates are
// allowed, counted and reported.
func TestRestartMidStream(t *testing.T) {
	node.require(t)
	const (
		total      = 10000
		publishers = 4
		batch      = 5
		restartAt  = 3000
	)
	url := node.url()
	topic := uniqueTopic(t, url)
	b := newBroker(t, amqp.Config{URL: url, PublishTimeout: 5 * time.Second, ReconnectMax: time.Second})
	sub, err := b.SubscribeGroup(context.Background(), topic, broker.Group{Prefetch: 64})
	require.NoError(t, err)

	var (
		mu        sync.Mutex
		published = map[string]bool{}
		received  = map[string]int{}
		pubErrs   atomic.Int64
		sent      atomic.Int64
	)
	allReceived := make(chan struct{})
	publishersDone := make(chan struct{})
	checkDone := func() { // with mu held
		select {
		case <-publishersDone:
		default:
			return
		}
		for id := range published {
			if received[id] == 0 {
				return
			}
		}
		select {
		case <-allReceived:
		default:
			close(allReceived)
		}
	}

	// Consumer.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case m := <-sub:
				mu.Lock()
				received[m.UUID]++
				checkDone()
				mu.Unlock()
				m.Ack()
			case <-allReceived:
				return
			case <-time.After(90 * time.Second):
				return
			}
		}
	}()

	// Restart once restartAt messages have been published; publishing goes
	// on, paced, through the outage.
	restarted := make(chan error, 1)
	restartOnce := sync.Once{}
	var pwg sync.WaitGroup
	for p := range publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := p * batch; i < total; i += publishers * batch {
				msgs := make([]*message.Message, 0, batch)
				for j := i; j < i+batch && j < total; j++ {
					msgs = append(msgs, message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprint(j))))
				}
				for {
					err := b.Publish(topic, msgs...)
					if err == nil {
						break
					}
					pubErrs.Add(1)
					t.Logf("publish failed, retrying: %v", err)
				}
				mu.Lock()
				for _, m := range msgs {
					published[m.UUID] = true
				}
				mu.Unlock()
				if sent.Add(int64(len(msgs))) >= restartAt {
					restartOnce.Do(func() {
						go func() { restarted <- node.run("restart") }()
					})
					<-tick.C
				}
			}
		}()
	}
	pwg.Wait()
	close(publishersDone)
	mu.Lock()
	checkDone()
	mu.Unlock()
	require.NoError(t, <-restarted)

	select {
	case <-allReceived:
	case <-time.After(90 * time.Second):
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	lost, dups := 0, 0
	for id := range published {
		if received[id] == 0 {
			lost++
		}
	}
	for _, n := range received {
		dups += n - 1
	}
	t.Logf("published %d, publish errors %d (retried), received %d distinct, duplicates %d, lost %d",
		len(published), pubErrs.Load(), len(received), dups, lost)
	require.Equal(t, total, len(published))
	require.Zero(t, lost, "messages published successfully and never received")
}
