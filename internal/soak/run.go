package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/amqp"
	"github.com/harvesthub/hub/dlq"
)

// node is the soak's private RabbitMQ node.
type node struct {
	script, dir string
	env         []string
	url         string
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startNode(script, id string) (*node, error) {
	abs, err := filepath.Abs(script)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hubsoak-rmq-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dist, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &node{script: abs, dir: dir, url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), env: []string{
		"HUB_RMQ_DIR=" + dir + "/node",
		"HUB_RMQ_NODENAME=hubsoak-" + id + "@localhost",
		"HUB_RMQ_PORT=" + strconv.Itoa(port),
		"HUB_RMQ_DIST_PORT=" + strconv.Itoa(dist),
		"HUB_RMQ_CERTS=",
	}}
	return n, n.do("start")
}

func (n *node) do(verb string) error {
	cmd := exec.Command(n.script, verb)
	cmd.Env = append(os.Environ(), n.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(n.script), verb, err, out)
	}
	return nil
}

func (n *node) remove() {
	_ = n.do("stop")
	_ = os.RemoveAll(n.dir)
	_ = os.Remove(n.dir + "/node.lock")
}

// proc is one worker process.
type proc struct {
	cmd  *exec.Cmd
	out  string
	done chan struct{}
}

type soak struct {
	o      options
	id     string
	topic  string
	prefix string
	node   *node
	dir    string
	log    io.Writer

	mu      sync.Mutex
	workers []*proc
	handled map[string]int
	offsets map[string]int64
	letters map[string]map[time.Time]bool // key -> FailedAt of each distinct letter
	badDLQ  int                           // letters that are not poison
}

func (s *soak) startWorker() (*proc, error) {
	out := filepath.Join(s.dir, fmt.Sprintf("worker-%d.out", len(s.workers)))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SOAK_WORKER=1", "SOAK_OUT="+out, "SOAK_URL="+s.node.url,
		"SOAK_REDIS="+s.o.redis, "SOAK_PREFIX="+s.prefix, "SOAK_TOPIC="+s.topic)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.workers = append(s.workers, p)
	s.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for !s.ready(p) {
		select {
		case <-p.done:
			return nil, fmt.Errorf("worker %s exited before it was ready", out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("worker %s not ready after 2m", out)
		}
	}
	return p, nil
}

func (s *soak) ready(p *proc) bool {
	b, _ := os.ReadFile(p.out)
	return strings.Contains(string(b), "ready\n")
}

// scan reads the new lines of every worker's output.
func (s *soak) scan() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.workers {
		f, err := os.Open(p.out)
		if err != nil {
			continue
		}
		if _, err := f.Seek(s.offsets[p.out], io.SeekStart); err == nil {
			r := bufio.NewReader(f)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break // a partial last line is read next time
				}
				s.offsets[p.out] += int64(len(line))
				if k, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "handled "); ok {
					s.handled[k]++
				}
			}
		}
		_ = f.Close()
	}
}

func (s *soak) key(i int) string { return "k" + strconv.Itoa(i) }

// dup reports whether key i is published twice. Poison keys never are: a
// second message with the key of a dead-lettered one is handled (and
// dead-lettered) again, which would blur the letter count.
func (s *soak) dup(i int) bool {
	return s.o.dupEvery > 0 && i%s.o.dupEvery == s.o.dupEvery/2 && !s.job(i).Poison
}

func (s *soak) job(i int) Job {
	return Job{N: i, Poison: s.o.poisonEvery > 0 && i%s.o.poisonEvery == 0,
		Transient: s.o.transientEvery > 0 && i%s.o.transientEvery == 1}
}

// result is the soak's outcome.
type result struct {
	published, poison, dupPublished      int
	handledOnce, handledTwice, lost      int
	deadLettered, lettersDuplicated      int
	wrongLetters, duplicatesAcked, kills int
	restarts, publishRetries             int
	elapsed                              time.Duration
}

func (r result) ok() bool {
	return r.lost == 0 && r.handledTwice == 0 && r.wrongLetters == 0 && r.deadLettered == r.poison
}

func run(o options, w io.Writer) (result, error) {
	var res result
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	dir, err := os.MkdirTemp("", "hubsoak-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	s := &soak{o: o, id: id, topic: "soak." + id, prefix: "soak:" + id + ":", dir: dir, log: w,
		handled: map[string]int{}, offsets: map[string]int64{}, letters: map[string]map[time.Time]bool{}}

	if o.url != "" {
		if o.restartAt > 0 {
			return res, fmt.Errorf("-amqp-url %s with -restart-at %v: the soak restarts only a node of its own; set -restart-at 0", o.url, o.restartAt)
		}
		fmt.Fprintf(w, "soak %s: %d messages, %d workers, RabbitMQ at %s\n", id, o.n, o.workers, o.url)
		s.node = &node{url: o.url}
		defer deleteTopology(o.url, s.topic)
	} else {
		fmt.Fprintf(w, "soak %s: %d messages, %d workers, private RabbitMQ node starting\n", id, o.n, o.workers)
		s.node, err = startNode(o.script, id)
		if err != nil {
			return res, err
		}
		defer s.node.remove()
	}
	rc := redis.NewClient(&redis.Options{Addr: o.redis})
	defer rc.Close()
	defer cleanRedis(rc, s.prefix)
	if err := rc.Ping(context.Background()).Err(); err != nil {
		return res, fmt.Errorf("redis at %s: %w", o.redis, err)
	}

	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := amqp.New(amqp.Config{URL: s.node.url, Logger: quiet})
	if err != nil {
		return res, err
	}
	defer b.Close()
	// The workers' queue exists before the first publish, so nothing waits
	// in the topic's default queue.
	if err := b.Declare(context.Background(), s.topic, s.topic); err != nil {
		return res, err
	}
	pub, err := hub.New(b, hub.Config{Logger: quiet})
	if err != nil {
		return res, err
	}
	defer pub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Dead letters are collected from the DLQ topic's queue.
	letters, err := b.Subscribe(ctx, pub.DeadLetterTopic(s.topic))
	if err != nil {
		return res, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range letters {
			l, err := dlq.FromMessage(m)
			s.mu.Lock()
			if err != nil || !s.job(keyIndex(l.Key)).Poison {
				s.badDLQ++
			}
			// A letter redelivered to this collector (its ack lost in the
			// broker restart) is the same letter: letters are told apart by
			// the time they were dead-lettered.
			if s.letters[l.Key] == nil {
				s.letters[l.Key] = map[time.Time]bool{}
			}
			s.letters[l.Key][l.FailedAt] = true
			s.mu.Unlock()
			m.Ack()
		}
	}()

	for range o.workers {
		if _, err := s.startWorker(); err != nil {
			return res, err
		}
	}
	defer s.stopWorkers()

	start := time.Now()
	var published, retries atomic.Int64
	keys := make(chan int)
	pubDone := make(chan struct{})
	var pwg sync.WaitGroup
	for range o.publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := range keys {
				copies := 1
				if s.dup(i) {
					copies = 2
				}
				for range copies {
					for {
						pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
						err := hub.Publish(pctx, pub, s.topic, s.job(i), hub.WithKey(s.key(i)))
						pcancel()
						if err == nil {
							break
						}
						if ctx.Err() != nil {
							return
						}
						retries.Add(1) // the broker restarts: publish again, same key
						time.Sleep(100 * time.Millisecond)
					}
				}
				published.Add(1)
			}
		}()
	}
	go func() {
		defer close(pubDone)
		defer pwg.Wait()
		defer close(keys)
		for i := 1; i <= o.n; i++ {
			select {
			case keys <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	poison, dups := 0, 0
	for i := 1; i <= o.n; i++ {
		if s.job(i).Poison {
			poison++
		}
		if s.dup(i) {
			dups++
		}
	}
	want := o.n - poison
	killed, restarted := false, false
	last, lastProgress := -1, time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		<-tick.C
		s.scan()
		s.mu.Lock()
		done, nLetters := len(s.handled), 0
		for range s.letters {
			nLetters++
		}
		s.mu.Unlock()
		fmt.Fprintf(w, "%6.0fs published %d handled %d letters %d\n", time.Since(start).Seconds(), published.Load(), done, nLetters)
		if done != last {
			last, lastProgress = done, time.Now()
		}
		select {
		case <-pubDone:
			if done >= want && nLetters >= poison {
				goto finished
			}
		default:
		}
		if time.Since(lastProgress) > o.stall {
			fmt.Fprintf(w, "no progress for %v: giving up\n", o.stall)
			goto finished
		}
		frac := float64(done) / float64(want)
		if !killed && o.killAt > 0 && frac >= o.killAt {
			killed = true
			s.mu.Lock()
			victim := s.workers[0]
			s.mu.Unlock()
			fmt.Fprintf(w, "SIGKILL worker %s\n", filepath.Base(victim.out))
			_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			<-victim.done
			res.kills++
			if _, err := s.startWorker(); err != nil {
				return res, err
			}
		}
		if !restarted && o.restartAt > 0 && frac >= o.restartAt {
			restarted = true
			fmt.Fprintln(w, "restarting the RabbitMQ node")
			if err := s.node.do("restart"); err != nil {
				return res, err
			}
			res.restarts++
		}
	}
finished:
	res.elapsed = time.Since(start)
	cancel()
	<-pubDone
	s.stopWorkers()
	s.scan()

	s.mu.Lock()
	defer s.mu.Unlock()
	res.published = int(published.Load())
	res.publishRetries = int(retries.Load())
	res.poison, res.dupPublished = poison, dups
	dupTwice := 0
	for i := 1; i <= o.n; i++ {
		k, j := s.key(i), s.job(i)
		n := s.handled[k]
		switch {
		case j.Poison:
			if n > 0 {
				res.wrongLetters++ // a poison handled successfully cannot happen
			}
			if n := len(s.letters[k]); n > 0 {
				res.deadLettered++
				res.lettersDuplicated += n - 1
			}
		case n == 0:
			res.lost++
		case n == 1:
			res.handledOnce++
		default:
			res.handledTwice++
			if s.dup(i) {
				dupTwice++
			}
		}
	}
	res.wrongLetters += s.badDLQ
	var odd []string
	for i := 1; i <= o.n && len(odd) < 20; i++ {
		k := s.key(i)
		if n, l := s.handled[k], len(s.letters[k]); (s.job(i).Poison && l != 1) || (!s.job(i).Poison && n != 1) {
			odd = append(odd, fmt.Sprintf("%s(handled %d, letters %d)", k, n, l))
		}
	}
	if len(odd) > 0 {
		fmt.Fprintln(w, "keys off the contract (first 20):", strings.Join(odd, " "))
	}
	res.duplicatesAcked = dups - dupTwice
	printTable(w, o, res)
	return res, nil
}

func keyIndex(key string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(key, "k"))
	return n
}

// stopWorkers sends SIGTERM to every live worker and waits up to a minute
// for each before killing it.
func (s *soak) stopWorkers() {
	s.mu.Lock()
	ws := append([]*proc(nil), s.workers...)
	s.mu.Unlock()
	for _, p := range ws {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ws {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// deleteTopology removes the soak's exchanges and queues from a shared
// server: the topic's (its handler's default group) and its DLQ's.
func deleteTopology(url, topic string) {
	c, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	for _, name := range []string{topic, topic + ".dlq"} {
		ch, err := c.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(name, false, false, false)
		_ = ch.ExchangeDelete(name, false, false)
		_ = ch.Close()
	}
}

func cleanRedis(rc *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			rc.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rc.Del(ctx, batch...)
	}
}

func printTable(w io.Writer, o options, r result) {
	fmt.Fprintf(w, "\n| soak: %d messages, %d workers, %d SIGKILL, %d RabbitMQ restart, %v | count |\n|---|---:|\n",
		o.n, o.workers, r.kills, r.restarts, r.elapsed.Round(time.Second))
	rows := []struct {
		name string
		v    int
	}{
		{"published (distinct keys)", r.published},
		{"handled once", r.handledOnce},
		{"handled twice (must be 0)", r.handledTwice},
		{"lost (must be 0)", r.lost},
		{fmt.Sprintf("dead-lettered (must be the %d poison)", r.poison), r.deadLettered},
		{"letters duplicated", r.lettersDuplicated},
		{"wrongly dead-lettered or handled (must be 0)", r.wrongLetters},
		{fmt.Sprintf("duplicates acked (of %d keys published twice)", r.dupPublished), r.duplicatesAcked},
		{"publishes retried (broker restart)", r.publishRetries},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %d |\n", row.name, row.v)
	}
	if !r.ok() {
		fmt.Fprintln(w, "\nFAIL: the delivery contract was broken")
	}
}
