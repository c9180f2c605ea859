package kafka_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/broker"
	"github.com/harvesthub/hub/broker/kafka"
)

// childEnv holds "addrs|topic|group" for the consumer process that
// TestKilledConsumer starts and kills.
const childEnv = "HUB_KAFKA_TEST_CHILD"

// runChild subscribes with prefetch 4, receives 4 messages, acks the 1st,
// 3rd and 4th (not the 2nd), says "holding" and waits to be killed.
func runChild() {
	parts := strings.Split(os.Getenv(childEnv), "|")
	b, err := kafka.New(kafka.Config{Brokers: strings.Split(parts[0], ","), Partitions: 1, Logger: quiet,
		SessionTimeout: time.Second, CommitInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ch, err := b.SubscribeGroup(context.Background(), parts[1], broker.Group{Name: parts[2], Prefetch: 4})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	for i := range 4 {
		m := <-ch
		if i != 1 {
			m.Ack()
		}
	}
	fmt.Println("holding")
	select {}
}

// TestKilledConsumer kills (SIGKILL) a group member holding messages, some
// acked out of order: the other member receives every message from the
// first unacked one on, and the commit never passed it.
func TestKilledConsumer(t *testing.T) {
	addrs := newCluster(t)
	b := newBroker(t, addrs)
	adm := admin(t, addrs)
	topic, group := unique("killed"), "workers"
	require.NoError(t, b.Declare(context.Background(), topic, group))
	for i := range 10 {
		require.NoError(t, b.Publish(topic, msg(fmt.Sprint("m", i))))
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(addrs, ",")+"|"+topic+"|"+group)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "holding\n", line)

	// The child acked offsets 0, 2 and 3: only offset 0 may be committed.
	gid := topic + "~" + group
	require.Eventually(t, func() bool { return committed(t, adm, gid, topic) == 1 }, 10*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.SubscribeGroup(ctx, topic, broker.Group{Name: group, Prefetch: 10})
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	killed = true
	require.Equal(t, int64(1), committed(t, adm, gid, topic), "the commit passed an unacked offset")

	var got []string
	for range 9 {
		m := receive(t, ch)
		got = append(got, m.UUID)
		m.Ack()
	}
	require.Equal(t, []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}, got)
	require.Eventually(t, func() bool { return committed(t, adm, gid, topic) == 10 }, 10*time.Second, 10*time.Millisecond)
}
