//go:build cluster

package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	hub "github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/dlq"
	"github.com/harvesthub/hub/retry"
)

type job struct {
	N int `json:"n"`
}

// What the handler does with message n.
func kind(n int) string {
	switch {
	case n%50 == 7:
		return "bad" // fails every attempt: dead-lettered after its delayed retries
	case n%4 == 1:
		return "flaky" // fails its first attempt: one delayed retry
	default:
		return "ok"
	}
}

// TestNodeKilled kills the node the hub is connected to (its queues'
// leaders are elsewhere): the connection moves to another node, publishes
// are confirmed there, consumers subscribe again.
func TestNodeKilled(t *testing.T) {
	lossless(t, func(t *testing.T, delayQueue string) int { return 1 })
}

// TestLeaderKilled kills the node holding the quorum leader of the delay
// queue while delayed retries wait in it and are dead-lettered out of it.
func TestLeaderKilled(t *testing.T) {
	lossless(t, func(t *testing.T, delayQueue string) int {
		n := leaderOf(t, delayQueue)
		t.Logf("the leader of %s is on %s", delayQueue, nodeName(n))
		return n
	})
}

// lossless runs 10,000 messages through a hub on quorum queues of the
// cluster: a quarter fail their first attempt (a delayed retry through a
// delay queue), one in fifty fail always (dead-lettered after two delayed
// retries). Once 2,500 are done, node victim() is SIGKILLed; it is started
// again 5s later, while the messages go on. Every message must be handled
// successfully exactly once, or dead-lettered when it is "bad", and nothing
// else may be in the dead-letter topic.
func lossless(t *testing.T, victim func(t *testing.T, delayQueue string) int) {
	requireCluster(t)
	const (
		total   = 10000
		batch   = 50
		killAt  = 2500
		timeout = 4 * time.Minute
	)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	topic := "clustertest." + hex.EncodeToString(rb[:])
	dlqTopic := topic + amqp.DeadLetterSuffixDefault
	delay := time.Second
	tier, _ := amqp.DelayTier(delay)
	delayQueue := "hub.qdelay." + tier.String() + "." + topic
	t.Cleanup(func() {
		deleteQueues([]string{topic, dlqTopic, delayQueue, "hub.qdelay.125ms." + topic, "hub.qdelay.250ms." + topic},
			[]string{topic, dlqTopic})
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()

	// The topology is declared through node 3, so its quorum leaders are
	// there (client-local placement), not on the node the hub uses.
	setup, err := amqp.New(amqp.Config{URL: nodeURL(3), QueueType: amqp.QueueQuorum, Logger: logger})
	require.NoError(t, err)
	require.NoError(t, setup.Declare(ctx, topic))
	require.NoError(t, setup.PublishDelayed(ctx, topic, topic, delay)) // no messages: declares the delay queue
	require.NoError(t, setup.Close())

	b, err := amqp.New(amqp.Config{
		URLs:           []string{nodeURL(1), nodeURL(2), nodeURL(3)},
		QueueType:      amqp.QueueQuorum,
		ReconnectMin:   50 * time.Millisecond,
		ReconnectMax:   time.Second,
		PublishTimeout: 20 * time.Second,
		Logger:         logger,
	})
	require.NoError(t, err)
	policy := retry.Policy{Attempts: 1, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond,
		Jitter: 1e-9, Multiplier: 1, Redeliveries: 2, RedeliveryDelay: delay, MaxRedeliveryDelay: delay}
	h, err := hub.New(b, hub.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), Retry: policy})
	require.NoError(t, err)

	var (
		mu        sync.Mutex
		succeeded = map[int]int{}
		calls     = map[int]int{}
		letters   = map[int]int{}
		wrong     []string
		done      = make(chan struct{})
		progress  = make(chan int, 1) // successes, latest
	)
	finished := func() bool { // with mu held
		for n := range total {
			if kind(n) == "bad" {
				if letters[n] == 0 {
					return false
				}
			} else if succeeded[n] == 0 {
				return false
			}
		}
		return true
	}
	checkDone := func() { // with mu held
		select {
		case <-done:
			return
		default:
		}
		if len(succeeded)+len(letters) >= total && finished() {
			close(done)
		}
	}
	require.NoError(t, hub.Handle(h, topic, func(ctx context.Context, m hub.Message[job]) error {
		n := m.Payload.N
		mu.Lock()
		defer mu.Unlock()
		calls[n]++
		switch k := kind(n); {
		case k == "bad":
			return fmt.Errorf("job %d always fails", n)
		case k == "flaky" && m.Attempt == 1:
			return fmt.Errorf("job %d fails its first attempt", n)
		}
		succeeded[n]++
		select {
		case <-progress:
		default:
		}
		progress <- len(succeeded)
		checkDone()
		return nil
	}, hub.Concurrency(32)))

	start := time.Now()
	tctx, tcancel := context.WithTimeout(ctx, timeout) // the whole run
	defer tcancel()
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- h.Run(runCtx) }()
	select {
	case <-h.Running():
	case err := <-ran:
		t.Fatalf("hub did not start: %v", err)
	}

	// Dead letters, read from the dead-letter topic's queue.
	dctx, dstop := context.WithCancel(ctx)
	dead, err := b.Subscribe(dctx, dlqTopic)
	require.NoError(t, err)
	var dwg sync.WaitGroup
	dwg.Add(1)
	go func() {
		defer dwg.Done()
		for m := range dead {
			l, err := dlq.FromMessage(m)
			mu.Lock()
			n, perr := strconv.Atoi(l.Key[len("job-"):])
			switch {
			case err != nil || perr != nil:
				wrong = append(wrong, fmt.Sprintf("letter %s: %v %v", m.UUID, err, perr))
			case kind(n) != "bad":
				wrong = append(wrong, fmt.Sprintf("job %d (%s) dead-lettered: %s: %s", n, kind(n), l.Reason, l.Error))
			// Three handler calls, more when RabbitMQ redelivered it too.
			case l.Reason != hub.ReasonExhausted || l.Attempts < 3 || l.OriginalTopic != topic:
				wrong = append(wrong, fmt.Sprintf("job %d letter: reason %q attempts %d topic %q", n, l.Reason, l.Attempts, l.OriginalTopic))
			}
			if perr == nil {
				letters[n]++
			}
			checkDone()
			mu.Unlock()
			m.Ack()
		}
	}()

	// Publishers: a batch whose publish fails is published again (its
	// keys make the copies harmless).
	var (
		pwg       sync.WaitGroup
		pubErrors int
		pubMu     sync.Mutex
	)
	for p := range 4 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := p * batch; i < total; i += 4 * batch {
				jobs := make([]job, 0, batch)
				for n := i; n < i+batch && n < total; n++ {
					jobs = append(jobs, job{N: n})
				}
				for {
					pctx, cancel := context.WithTimeout(tctx, 30*time.Second)
					err := hub.PublishBatch(pctx, h, topic, jobs, hub.WithKeyFunc(func(j int) string {
						return "job-" + strconv.Itoa(jobs[j].N)
					}))
					cancel()
					if err == nil {
						break
					}
					pubMu.Lock()
					pubErrors++
					pubMu.Unlock()
					select {
					case <-done:
						return
					case <-tctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}

	// The fault: kill at killAt successes; start the node again 5s later,
	// while the messages go on (its boot takes tens of seconds here).

	var killed time.Time
	node := 0
	restarted := make(chan error, 1)
	func() {
		for {
			select {
			case s := <-progress:
				if killed.IsZero() && s >= killAt {
					node = victim(t, delayQueue)
					out, err := run("kill", strconv.Itoa(node))
					require.NoError(t, err, out)
					killed = time.Now()
					t.Logf("killed %s at %d successes", nodeName(node), s)
					go func() {
						time.Sleep(5 * time.Second) // the outage, not a synchronisation
						_, err := run("restart", strconv.Itoa(node))
						if err == nil {
							t.Logf("%s back, %v after the kill", nodeName(node), time.Since(killed).Round(time.Millisecond))
						}
						restarted <- err
					}()
				}
			case <-done:
				return
			case <-tctx.Done():
				return
			}
		}
	}()
	select {
	case <-done:
	case <-tctx.Done():
	}
	pwg.Wait()
	if !killed.IsZero() {
		require.NoError(t, <-restarted)
	}
	stop()
	require.NoError(t, <-ran)
	dstop()
	dwg.Wait()
	require.NoError(t, b.Close())

	mu.Lock()
	defer mu.Unlock()
	missing, dups, dupLetters := 0, 0, 0
	for n := range total {
		switch kind(n) {
		case "bad":
			if letters[n] == 0 {
				missing++
			}
			dupLetters += max(letters[n]-1, 0)
			if succeeded[n] != 0 {
				wrong = append(wrong, fmt.Sprintf("bad job %d succeeded", n))
			}
		default:
			if succeeded[n] == 0 {
				missing++
			}
			dups += max(succeeded[n]-1, 0)
		}
	}
	t.Logf("%d messages: %d handled, %d dead-lettered (%d letters twice), %d publish retries, %d missing, in %v",
		total, len(succeeded), len(letters), dupLetters, pubErrors, missing, time.Since(start).Round(time.Millisecond))
	if missing > 0 {
		// Where they are: the queues of this run as the cluster sees them.
		for n := 1; n <= 3; n++ {
			out, err := run("ctl", strconv.Itoa(n), "list_queues", "-q", "name", "type", "leader", "members", "messages", "messages_ready", "messages_unacknowledged")
			if err == nil {
				for line := range strings.SplitSeq(out, "\n") {
					if strings.Contains(line, topic) || strings.HasPrefix(line, "name") {
						t.Log(line)
					}
				}
				break
			}
		}
	}
	require.False(t, killed.IsZero(), "the node was never killed")
	require.Zero(t, missing, "messages lost")
	require.Zero(t, dups, "messages handled successfully more than once")
	require.Empty(t, wrong)
	select {
	case <-done:
	default:
		t.Fatal(errors.New("timed out"))
	}
}
