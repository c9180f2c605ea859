package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/examples/ingest/api"
	"github.com/harvesthub/hub/examples/internal/itest"
	"github.com/harvesthub/hub/examples/internal/records"

	// The services run as binaries built by the test, which go test's
	// cache cannot see; importing their packages makes a change to them
	// (or to the library) rebuild this test instead of reusing a cached
	// pass. Use -count=1 after changing only a main.go.
	_ "github.com/harvesthub/hub/examples/dispatch/dispatcher"
	_ "github.com/harvesthub/hub/examples/index/indexer"
	_ "github.com/harvesthub/hub/examples/internal/platform"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		// Bleve's analysis workers (imported through the indexer) start in
		// its init and never stop.
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildServices builds the ingest, dispatch and index binaries once per
// test binary, with go build, and returns their directory.
func buildServices(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "harvest-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./ingest", "./dispatch", "./index")
		cmd.Dir = ".." // the examples module
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binDir
}

// proc is a service running as a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{} // closed when the process has exited and its logs are read
	err  error         // cmd.Wait's error, set before done closes
}

func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// start runs bin with env and waits for its "listening" log line.
func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	p.cmd.Stdout = io.Discard
	require.NoError(t, p.cmd.Start())
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.logs.Write(line)
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var rec struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Message == "listening" {
				select {
				case addrCh <- rec.Addr:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, p.Logs())
		}
	})
	select {
	case p.addr = <-addrCh:
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", name, p.err, p.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not listen within 60s\n%s", name, p.Logs())
	}
	p.addr = "http://" + p.addr
	return p
}

// stop sends sig and waits for the exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case <-p.done:
		return p.err
	case <-time.After(45 * time.Second):
		t.Fatalf("%s did not exit within 45s after %v\n%s", p.name, sig, p.Logs())
		return nil
	}
}

type client struct {
	t *testing.T
	c *http.Client
}

func (c client) do(method, u, ctype, key, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(c.t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	res, err := c.c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// eventually polls cond every 50ms until it holds or d passes: the
// services are separate processes, observable only by asking them.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// writeKeys writes a key file for -keys (every service reads it: ingest
// for posting, index and dispatch for search and job status) and returns
// the key.
func writeKeys(t *testing.T, dir string) (path, key string) {
	secret := randomHex(t, 32)
	key = api.FormatKey("e2e", secret)
	entry := api.KeyEntry{ID: "e2e", Hash: api.HashKey(key), Scopes: []string{api.ScopeWrite, api.ScopeRead}, Tenant: "e2e"}
	b, err := json.Marshal([]api.KeyEntry{entry})
	require.NoError(t, err)
	path = filepath.Join(dir, "keys.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path, key
}

func ndjson(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, `{"id":"adv-%03d","source":"cyber-advisories","title":"Advisory %d: patch gateway number%03d","body":"Apply the update to appliance%03d","tags":["e2e"]}`+"\n", i, i, i, i)
	}
	return b.String()
}

// deleteTopology removes the test's exchanges and queues from RabbitMQ.
func deleteTopology(t *testing.T, prefix string) {
	conn, err := amqp091.Dial(itest.AMQPURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer ch.Close()
	for _, topic := range []string{records.TopicIngested, records.TopicIndexJob, records.TopicIndexed} {
		for _, name := range []string{topic, topic + ".dlq"} {
			_, _ = ch.QueueDelete(prefix+name, false, false, false)
			_ = ch.ExchangeDelete(prefix+name, false, false)
		}
	}
}

// TestPipelineOverRabbitMQ runs ingest, dispatch and index as separate
// processes on RabbitMQ, kills the index service while records are in
// flight, restarts it, and checks that every record accepted with 202
// becomes searchable; then it stops every service with SIGTERM and checks
// each exits 0.
//
// The services share a Redis idempotency store, as in the Kubernetes
// manifests.
func TestPipelineOverRabbitMQ(t *testing.T) {
	itest.Require(t, "RabbitMQ", itest.AMQPURL())
	itest.Require(t, "Redis", itest.RedisAddr())
	prefix := "e2e-" + randomHex(t, 4) + "-"
	t.Cleanup(func() { deleteTopology(t, prefix) })
	t.Cleanup(func() { deleteRedisKeys(t, "hub:idem:"+prefix) })
	testPipeline(t, "HUB_BROKER=amqp", "HUB_AMQP_URL="+itest.AMQPURL(), "HUB_TOPIC_PREFIX="+prefix,
		"HUB_STORE=redis", "HUB_REDIS_ADDR="+itest.RedisAddr(),
		// The killed worker's claims hold its messages back this long.
		"HUB_LEASE=3s")
}

// deleteRedisKeys removes the test's idempotency keys from the shared Redis.
func deleteRedisKeys(t *testing.T, prefix string) {
	c := redis.NewClient(&redis.Options{Addr: itest.RedisAddr()})
	defer c.Close()
	ctx := context.Background()
	n := 0
	iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err == nil {
			n++
		}
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleanup: %v", err)
	}
	t.Logf("deleted %d idempotency keys from Redis", n)
}

// TestPipelineOverSQS is the same over SQS and SNS (the fauxqs emulator).
// A killed worker's messages come back after the visibility timeout, 3s
// here.
func TestPipelineOverSQS(t *testing.T) {
	itest.Require(t, "SQS (fauxqs)", itest.SQSEndpoint())
	prefix := "e2e-" + randomHex(t, 4) + "-"
	testPipeline(t, "HUB_BROKER=sqs", "HUB_SQS_ENDPOINT="+itest.SQSEndpoint(), "HUB_TOPIC_PREFIX="+prefix,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"HUB_SQS_WAIT_TIME=1s", "HUB_SQS_VISIBILITY_TIMEOUT=3s")
}

func testPipeline(t *testing.T, brokerEnv ...string) {
	bins := buildServices(t)
	dir := t.TempDir()
	keysPath, key := writeKeys(t, dir)
	dataDir := filepath.Join(dir, "index-data")
	// Later entries win (exec uses the last value of a variable).
	env := append([]string{
		"HUB_LISTEN=127.0.0.1:0", "HUB_STORE=memory", "HUB_LOG_LEVEL=info", "HUB_SHUTDOWN_TIMEOUT=20s",
	}, brokerEnv...)
	bin := func(name string) string { return filepath.Join(bins, name) }

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := client{t: t, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}

	dispatch := start(t, "dispatch", bin("dispatch"), env, "-keys", keysPath)
	index := start(t, "index", bin("index"), env, "-data", dataDir, "-keys", keysPath)
	ingest := start(t, "ingest", bin("ingest"), env, "-keys", keysPath)
	for _, p := range []*proc{dispatch, index, ingest} {
		eventually(t, 20*time.Second, p.name+" ready", func() bool {
			status, _ := c.do("GET", p.addr+"/readyz", "", "", "")
			return status == http.StatusOK
		})
	}
	documents := func(p *proc) int {
		status, body := c.do("GET", p.addr+"/v1/stats", "", key, "")
		if status != http.StatusOK {
			return -1
		}
		var s struct{ Documents int }
		require.NoError(t, json.Unmarshal([]byte(body), &s))
		return s.Documents
	}

	// A first batch flows through.
	status, body := c.do("POST", ingest.addr+"/v1/records", "application/x-ndjson", key, ndjson(0, 10))
	require.Equal(t, http.StatusAccepted, status, body)
	eventually(t, 30*time.Second, "the first 10 records indexed", func() bool { return documents(index) == 10 })

	// A second batch is accepted, and the index service dies at once.
	status, body = c.do("POST", ingest.addr+"/v1/records", "application/x-ndjson", key, ndjson(10, 60))
	require.Equal(t, http.StatusAccepted, status, body)
	err := index.stop(t, syscall.SIGKILL)
	require.Error(t, err, "killed")

	// A third batch is accepted while no index service runs.
	status, body = c.do("POST", ingest.addr+"/v1/records", "application/x-ndjson", key, ndjson(60, 80))
	require.Equal(t, http.StatusAccepted, status, body)

	// Restarted on the same data, it catches up: nothing accepted is lost.
	index = start(t, "index (restarted)", bin("index"), env, "-data", dataDir, "-keys", keysPath)
	t.Logf("documents in the index when it restarted: %d of 80", documents(index))
	eventually(t, 60*time.Second, "all 80 records indexed after the restart", func() bool { return documents(index) == 80 })

	status, body = c.do("GET", index.addr+"/v1/search?q="+url.QueryEscape("appliance042"), "", "", "")
	require.Equal(t, http.StatusUnauthorized, status, "search needs a credential: %s", body)
	status, body = c.do("GET", index.addr+"/v1/search?q="+url.QueryEscape("appliance042"), "", key, "")
	require.Equal(t, http.StatusOK, status, body)
	var res struct {
		Total int `json:"total"`
		Hits  []struct {
			DocID string `json:"doc_id"`
			Title string `json:"title"`
		} `json:"hits"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	require.Equal(t, 1, res.Total, body)
	require.Equal(t, "cyber-advisories:adv-042", res.Hits[0].DocID)

	eventually(t, 30*time.Second, "dispatch reports adv-042 indexed", func() bool {
		status, body := c.do("GET", dispatch.addr+"/v1/jobs/cyber-advisories:adv-042", "", key, "")
		return status == http.StatusOK && strings.Contains(body, `"status":"indexed"`)
	})

	// SIGTERM: each service drains and exits 0.
	for _, p := range []*proc{ingest, dispatch, index} {
		require.NoError(t, p.stop(t, syscall.SIGTERM), "%s exit status\n%s", p.name, p.Logs())
		require.Contains(t, p.Logs(), `"message":"stopped"`, p.name)
	}
}
