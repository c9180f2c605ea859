package fleet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/idempotency/redisstore"
	"github.com/harvesthub/hub/internal/testenv"
	"github.com/harvesthub/hub/retry"
)

// Worker mode: the test binary re-executed with FLEET_WORKER=1 runs one hub
// worker until SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("FLEET_WORKER") == "1" {
		os.Exit(worker())
	}
	goleak.VerifyTestMain(m)
}

type Job struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func worker() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out, err := os.OpenFile(os.Getenv("FLEET_OUT"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("open out", "error", err)
		return 1
	}
	defer out.Close()
	store, closeStore, err := openStore(ctx, os.Getenv("FLEET_STORE"), os.Getenv("FLEET_PREFIX"))
	if err != nil {
		log.Error("store", "error", err)
		return 1
	}
	defer closeStore()
	b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Logger: log})
	if err != nil {
		log.Error("amqp", "error", err)
		return 1
	}
	defer b.Close()
	lease, _ := time.ParseDuration(os.Getenv("FLEET_LEASE"))
	h, err := hub.New(b, hub.Config{Logger: log, Idempotency: store, Lease: lease,
		Retry: retry.Policy{Attempts: 3, InitialInterval: time.Millisecond, RedeliveryDelay: 100 * time.Millisecond, MaxRedeliveryDelay: time.Second}})
	if err != nil {
		log.Error("hub", "error", err)
		return 1
	}
	block := os.Getenv("FLEET_BLOCK_KEY")
	var mu sync.Mutex
	write := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		// One write(2) per line: it reaches the kernel before the handler
		// returns, so a SIGKILL afterwards cannot lose it.
		if _, err := out.WriteString(line + "\n"); err != nil {
			log.Error("write", "error", err)
		}
	}
	if err := hub.Handle(h, os.Getenv("FLEET_TOPIC"), func(ctx context.Context, m hub.Message[Job]) error {
		if m.Key == block {
			write("blocked " + m.Key)
			<-ctx.Done() // hangs until the process is killed
			return ctx.Err()
		}
		write("handled " + m.Key)
		return nil
	}, hub.Concurrency(8)); err != nil {
		log.Error("handle", "error", err)
		return 1
	}
	write("ready")
	if err := h.Run(ctx); err != nil {
		log.Error("run", "error", err)
		return 1
	}
	return 0
}

func openStore(ctx context.Context, kind, prefix string) (idempotency.Store, func(), error) {
	switch kind {
	case "redis":
		c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
		s, err := redisstore.New(c, redisstore.Config{Prefix: "fleet:" + prefix + ":"})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(); _ = c.Close() }, nil
	case "postgres":
		pool, err := pgxpool.New(ctx, testenv.PostgresDSN())
		if err != nil {
			return nil, nil, err
		}
		s, err := pgstore.New(pool, pgstore.Config{Table: "fleet_" + prefix})
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		if err := s.Migrate(ctx); err != nil {
			pool.Close()
			return nil, nil, err
		}
		return s, func() { _ = s.Close(); pool.Close() }, nil
	}
	return nil, nil, fmt.Errorf("FLEET_STORE %q: want redis or postgres", kind)
}

// proc is one worker process.
type proc struct {
	cmd  *exec.Cmd
	out  string
	done chan error
}

func startWorker(t *testing.T, env map[string]string) *proc {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLEET_WORKER=1", "FLEET_OUT="+out)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	require.Eventually(t, func() bool { return len(p.lines("ready")) > 0 }, 60*time.Second, 20*time.Millisecond, "worker ready")
	return p
}

// lines returns the keys of the worker's output lines with prefix verb.
func (p *proc) lines(verb string) []string {
	f, err := os.Open(p.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == verb {
			keys = append(keys, "")
		} else if k, ok := strings.CutPrefix(line, verb+" "); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "worker exits 0 after draining")
		p.done <- nil // for Cleanup
	case <-time.After(60 * time.Second):
		t.Fatal("worker did not stop within 60s of SIGTERM")
	}
}

func unique() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requireServers(t *testing.T, store string) {
	testenv.Require(t, "RabbitMQ", testenv.AMQPURL())
	switch store {
	case "redis":
		testenv.Require(t, "Redis", testenv.RedisAddr())
	case "postgres":
		testenv.Require(t, "PostgreSQL", testenv.PostgresDSN())
	}
}

// readyCount returns the ready messages of a RabbitMQ queue.
func readyCount(t *testing.T, queue string) int {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

func deleteQueue(t *testing.T, names ...string) {
	conn, err := amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	for _, n := range names {
		_, _ = ch.QueueDelete(n, false, false, false)
		_ = ch.ExchangeDelete(n, false, false)
	}
}

func publisher(t *testing.T) *hub.Hub {
	t.Helper()
	b, err := amqp.New(amqp.Config{URL: testenv.AMQPURL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	h, err := hub.New(b, hub.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(); _ = b.Close() })
	return h
}

// Two worker processes consume one queue with one shared store while 10k
// messages, a fifth of them duplicate keys, are published: each key is
// handled exactly once.
func TestTwoProcessesHandleEachKeyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, store := range []string{"redis", "postgres"} {
		t.Run(store, func(t *testing.T) {
			requireServers(t, store)
			id := unique()
			topic := "fleet_once_" + id
			t.Cleanup(func() { deleteQueue(t, topic) })
			env := map[string]string{"FLEET_STORE": store, "FLEET_PREFIX": id, "FLEET_TOPIC": topic, "FLEET_LEASE": "30s"}
			pub := publisher(t)
			// Declare the queue before the workers race to consume it.
			require.NoError(t, hub.Publish(context.Background(), pub, topic, Job{Key: "warmup"}, hub.WithKey("warmup")))
			w1, w2 := startWorker(t, env), startWorker(t, env)

			const total, unique = 10000, 8000
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for part := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := part; i < total; i += 4 {
						k := i
						if i >= unique {
							k = (i * 7919) % unique // a duplicate of an earlier key
						}
						if err := hub.Publish(context.Background(), pub, topic, Job{Key: strconv.Itoa(k), N: i}, hub.WithKey("k"+strconv.Itoa(k))); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			handled := func() map[string]int {
				m := map[string]int{}
				for _, w := range []*proc{w1, w2} {
					for _, k := range w.lines("handled") {
						m[k]++
					}
				}
				return m
			}
			require.Eventually(t, func() bool { return len(handled()) == unique+1 }, 3*time.Minute, 100*time.Millisecond, "every key handled")
			require.Eventually(t, func() bool { return readyCount(t, topic) == 0 }, time.Minute, 100*time.Millisecond, "queue drained")
			w1.stop(t)
			w2.stop(t)
			require.Zero(t, readyCount(t, topic), "nothing left unacked or requeued")
			got := handled()
			for k, n := range got {
				require.Equal(t, 1, n, "key %s handled %d times", k, n)
			}
			require.NotEmpty(t, w1.lines("handled"), "both workers took part")
			require.NotEmpty(t, w2.lines("handled"), "both workers took part")
		})
	}
}

// A worker killed with SIGKILL mid-handler, between Claim and Complete: the
// message goes back to RabbitMQ, and once the lease has passed another
// worker handles it. No key stays stuck longer than the lease.
func TestKilledWorkerMessageHandledByAnother(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, store := range []string{"redis", "postgres"} {
		t.Run(store, func(t *testing.T) {
			requireServers(t, store)
			id := unique()
			topic := "fleet_kill_" + id
			t.Cleanup(func() { deleteQueue(t, topic) })
			const lease = 2 * time.Second
			pub := publisher(t)
			require.NoError(t, hub.Publish(context.Background(), pub, topic, Job{Key: "warmup"}, hub.WithKey("warmup")))
			victim := startWorker(t, map[string]string{"FLEET_STORE": store, "FLEET_PREFIX": id, "FLEET_TOPIC": topic,
				"FLEET_LEASE": lease.String(), "FLEET_BLOCK_KEY": "doomed"})
			require.Eventually(t, func() bool { return len(victim.lines("handled")) == 1 }, 30*time.Second, 20*time.Millisecond)
			require.NoError(t, hub.Publish(context.Background(), pub, topic, Job{Key: "doomed"}, hub.WithKey("doomed")))
			require.Eventually(t, func() bool { return len(victim.lines("blocked")) == 1 }, 30*time.Second, 20*time.Millisecond, "victim holds the message")

			require.NoError(t, victim.cmd.Process.Kill()) // SIGKILL: no drain, no nack
			<-victim.done
			victim.done <- nil
			killedAt := time.Now()

			rescuer := startWorker(t, map[string]string{"FLEET_STORE": store, "FLEET_PREFIX": id, "FLEET_TOPIC": topic, "FLEET_LEASE": lease.String()})
			require.Eventually(t, func() bool {
				for _, k := range rescuer.lines("handled") {
					if k == "doomed" {
						return true
					}
				}
				return false
			}, 30*time.Second, 20*time.Millisecond, "another worker handles the killed worker's message")
			// The claim could only be retaken once the lease ran out, and not
			// much later: the delayed retry waits for the lease's end.
			took := time.Since(killedAt)
			require.Less(t, took, lease+10*time.Second, "the key was stuck %v, lease %v", took, lease)
			rescuer.stop(t)
			require.Zero(t, readyCount(t, topic))
		})
	}
}
