package outbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/outbox"
)

// The child relay process: TestMain runs runChildRelay instead of the
// tests when childEnv is set.
const (
	childEnv      = "HUB_OUTBOX_TEST_CHILD"
	childTable    = "HUB_OUTBOX_TEST_TABLE"
	childHangAt   = "HUB_OUTBOX_TEST_HANG_AT"
	childHungLine = "HUNG"
)

// hangingBroker passes publishes to the real broker until hangAt messages
// were published, then, with that batch accepted by RabbitMQ and not yet
// marked sent, says so on stdout and blocks: the parent SIGKILLs the
// process there, mid-batch.
type hangingBroker struct {
	broker.Broker
	mu     sync.Mutex
	n      int
	hangAt int
}

func (b *hangingBroker) Publish(topic string, msgs ...*message.Message) error {
	if err := b.Broker.Publish(topic, msgs...); err != nil {
		return err
	}
	b.mu.Lock()
	b.n += len(msgs)
	hang := b.n >= b.hangAt
	b.mu.Unlock()
	if hang {
		fmt.Println(childHungLine)
		select {} // until SIGKILL
	}
	return nil
}

func runChildRelay() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child relay:", err)
		return 2
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresDSN())
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	ab, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Transient: true, PublisherChannels: 1})
	if err != nil {
		return fail(err)
	}
	defer ab.Close()
	hangAt, _ := strconv.Atoi(os.Getenv(childHangAt))
	h, err := hub.New(&hangingBroker{Broker: ab, hangAt: hangAt}, hub.Config{})
	if err != nil {
		return fail(err)
	}
	o, err := outbox.New(pool, h, outbox.Config{Table: os.Getenv(childTable), BatchSize: 25})
	if err != nil {
		return fail(err)
	}
	if err := o.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// TestRelaySIGKILLedMidBatch: a relay process publishes a batch to
// RabbitMQ and is SIGKILLed before it marks the batch sent. Another relay
// takes over. Every committed row arrives, the killed batch twice with the
// same IDs (consumers deduplicate on them), no rolled-back row ever, and
// each key's rows in order.
func TestRelaySIGKILLedMidBatch(t *testing.T) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	topic := randName("outbox.crash.")
	t.Cleanup(func() { deleteTopology(testenv.AMQPURL(), topic) })

	ab, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Transient: true, PublisherChannels: 1})
	require.NoError(t, err)
	defer ab.Close()
	h, err := hub.New(ab, hub.Config{})
	require.NoError(t, err)
	defer h.Close()
	o := newOutbox(t, pool, h, schema, outbox.Config{BatchSize: 25})
	got := collect(t, ab, topic) // declares the queue before anything is published

	const keys, perKey = 10, 40
	var committed []string
	for n := range perKey {
		items := make([]Item, keys)
		for k := range items {
			items[k] = Item{Key: fmt.Sprintf("key-%d", k), N: n}
		}
		committed = append(committed, stage(t, pool, o, topic, true, items...)...)
		stage(t, pool, o, topic, false, Item{Key: "key-0", N: -n - 1}) // rolled back
	}
	const total = keys * perKey

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childTable+"="+schema+".outbox", childHangAt+"=110")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	hung := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == childHungLine {
				hung <- true
				return
			}
		}
		hung <- false
	}()
	select {
	case ok := <-hung:
		require.True(t, ok, "the child relay exited before it hung")
	case <-time.After(waitLimit):
		_ = cmd.Process.Kill()
		t.Fatal("the child relay did not reach its hang point")
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	// The killed batch reached RabbitMQ but is still pending in the table.
	waitFor(t, got, func() bool { return got.distinct() >= 110 }, "the child's messages")
	st, err := o.Stats(ctx)
	require.NoError(t, err)
	require.Greater(t, st.Pending, int64(total-110), "the killed batch was not marked sent")

	runRelay(t, o)
	waitFor(t, got, func() bool { return got.distinct() == total }, "every committed row")
	require.Eventually(t, func() bool {
		st, err := o.Stats(ctx)
		return err == nil && st.Pending == 0
	}, waitLimit, 10*time.Millisecond)

	msgs := got.snapshot()
	require.Greater(t, len(msgs), total, "the killed batch was published again")
	seen := map[string]bool{}
	byKey := map[string][]int{}
	for _, m := range msgs {
		if seen[m.UUID] {
			continue
		}
		seen[m.UUID] = true
		var it Item
		require.NoError(t, hub.Decode(h, m, &it))
		require.GreaterOrEqual(t, it.N, 0, "a rolled-back row was published: %s", m.UUID)
		byKey[it.Key] = append(byKey[it.Key], it.N)
	}
	for _, id := range committed {
		require.True(t, seen[id], "committed row %s arrived", id)
	}
	for k, ns := range byKey {
		for i, n := range ns {
			require.Equal(t, i, n, "key %s: rows in order", k)
		}
	}
}

func deleteTopology(url, topic string) {
	c, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	_, _ = ch.QueueDelete(topic, false, false, false)
	_ = ch.ExchangeDelete(topic, false, false)
}
