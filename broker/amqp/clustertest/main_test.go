//go:build cluster

package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The cluster of scripts/rabbitmq-cluster.sh with its default ports.
var (
	ports   = []int{5701, 5702, 5703}
	cluster struct {
		once sync.Once
		err  error
	}
)

func nodeURL(n int) string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", ports[n-1]) }

func nodeName(n int) string { return fmt.Sprintf("hubc%d@localhost", n) }

func script() string {
	p, _ := filepath.Abs("../../../scripts/rabbitmq-cluster.sh")
	return p
}

// run runs the cluster script with args and returns its output.
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script(), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmq-cluster.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err == nil {
		_ = c.Close()
	}
	return err == nil
}

// requireCluster makes sure the three nodes are up, starting the cluster
// once per test binary when they are not (and a node a failed test left
// down again). It skips t, or fails it with HUB_REQUIRE_INTEGRATION=1, when
// RabbitMQ is not installed.
func requireCluster(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil {
		msg := "rabbitmq-server is not installed: no RabbitMQ cluster for the cluster tests"
		if testenv.Required() {
			t.Fatal(msg + "; HUB_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	cluster.once.Do(func() {
		if listening(ports[0]) && listening(ports[1]) && listening(ports[2]) {
			return
		}
		_, cluster.err = run("start")
	})
	require.NoError(t, cluster.err)
	for n := range ports {
		if !listening(ports[n]) {
			_, err := run("restart", fmt.Sprint(n+1))
			require.NoError(t, err)
		}
	}
}

// leaderOf returns the node (1..3) holding the quorum leader of queue, as
// rabbitmqctl list_queues reports it.
func leaderOf(t *testing.T, queue string) int {
	t.Helper()
	out, err := run("ctl", "1", "list_queues", "-q", "--no-table-headers", "name", "leader")
	require.NoError(t, err)
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == queue {
			for n := 1; n <= 3; n++ {
				if f[1] == nodeName(n) {
					return n
				}
			}
			t.Fatalf("queue %s: leader %q is not a node of the cluster", queue, f[1])
		}
	}
	t.Fatalf("queue %s not listed by rabbitmqctl list_queues:\n%s", queue, out)
	return 0
}

// deleteQueues deletes queues and exchanges through a live node.
func deleteQueues(queues, exchanges []string) {
	for n := 1; n <= 3; n++ {
		c, err := amqp091.Dial(nodeURL(n))
		if err != nil {
			continue
		}
		defer c.Close()
		for _, q := range queues {
			if ch, err := c.Channel(); err == nil {
				_, _ = ch.QueueDelete(q, false, false, false)
				_ = ch.Close()
			}
		}
		for _, x := range exchanges {
			if ch, err := c.Channel(); err == nil {
				_ = ch.ExchangeDelete(x, false, false)
				_ = ch.Close()
			}
		}
		return
	}
}
