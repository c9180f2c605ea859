package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/examples/internal/itest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigPrecedence(t *testing.T) {
	t.Setenv("HUB_BROKER", "amqp")
	t.Setenv("HUB_LISTEN", ":9090")
	t.Setenv("HUB_SHUTDOWN_TIMEOUT", "7s")
	c := Defaults("svc")
	require.Equal(t, "amqp", c.Broker, "env over default")
	require.Equal(t, ":9090", c.Listen)
	require.Equal(t, 7*time.Second, c.ShutdownTimeout)
	require.Equal(t, StoreMemory, c.Store, "default")

	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-listen", "127.0.0.1:0", "-store", "redis"}))
	require.Equal(t, "127.0.0.1:0", c.Listen, "flag over env")
	require.Equal(t, "redis", c.Store)
	require.Equal(t, "amqp", c.Broker)
	require.NoError(t, c.Validate())
}

func TestConfigValidate(t *testing.T) {
	c := Defaults("svc")
	c.Broker, c.Store, c.LogLevel, c.Listen, c.ShutdownTimeout, c.Lease = "pulsar", "etcd", "loud", "", -1, 0
	err := c.Validate()
	for _, want := range []string{`-broker "pulsar"`, `-store "etcd"`, `-log-level "loud"`, "-listen is empty", "-shutdown-timeout", "-lease"} {
		require.ErrorContains(t, err, want)
	}
}

func TestLoggerIsECS(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, "ingest", 0).Info("hello", "k", "v")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	require.Equal(t, "hello", rec["message"])
	require.Equal(t, "INFO", rec["log.level"])
	require.Equal(t, "ingest", rec["service.name"])
	require.Contains(t, rec, "@timestamp")
	require.Equal(t, "v", rec["k"])
}

func testConfig() Config {
	c := Defaults("platform-test")
	c.Broker, c.Store, c.Listen, c.LogLevel, c.ShutdownTimeout = BrokerMemory, StoreMemory, "127.0.0.1:0", "info", 5*time.Second
	return c
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	res, err := c.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRunServesAndShutsDown runs a runtime, checks its endpoints, then
// cancels its context as SIGTERM would and checks the clean stop.
func TestRunServesAndShutsDown(t *testing.T) {
	var logs syncBuffer
	rt, err := New(context.Background(), testConfig(), &logs)
	require.NoError(t, err)
	closed := make(chan struct{})
	rt.AddCloser(func() error { close(closed); return nil })
	addr, err := rt.Listen()
	require.NoError(t, err)
	base := "http://" + addr.String()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	<-rt.Hub.Running()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	status, body := get(t, c, base+"/healthz")
	require.Equal(t, 200, status)
	require.JSONEq(t, `{"status":"ok"}`, body)
	status, body = get(t, c, base+"/readyz")
	require.Equal(t, 200, status, body)
	status, body = get(t, c, base+"/metrics")
	require.Equal(t, 200, status)
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, `service_name="platform-test"`)

	cancel()
	require.NoError(t, <-done)
	<-closed
	require.Contains(t, logs.String(), `"message":"listening"`)
	require.Contains(t, logs.String(), `"message":"stopped"`)
	require.NoError(t, rt.Close(), "Close after Run")
}

func TestReadyzReportsFailures(t *testing.T) {
	rt, err := New(context.Background(), testConfig(), io.Discard)
	require.NoError(t, err)
	defer rt.Close()
	rt.AddReadiness("index", func(context.Context) error { return io.ErrClosedPipe })
	addr, err := rt.Listen()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	status, body := get(t, &http.Client{Transport: tr}, "http://"+addr.String()+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Contains(t, body, "io: read/write on closed pipe")
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	a, err := New(context.Background(), testConfig(), io.Discard)
	require.NoError(t, err)
	defer a.Close()
	addr, err := a.Listen()
	require.NoError(t, err)

	cfg := testConfig()
	cfg.Listen = addr.String()
	b, err := New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	err = b.Run(context.Background())
	require.ErrorContains(t, err, "listening on")
	require.NoError(t, b.Close())
}

// TestDistributedBackends builds the runtime on the real servers each
// -broker and -store value names, and checks /readyz sees them.
func TestDistributedBackends(t *testing.T) {
	tests := []struct {
		name, service, addr string
		set                 func(*Config)
	}{
		{"amqp", "RabbitMQ", itest.AMQPURL(), func(c *Config) {
			c.Broker, c.AMQPURL, c.TopicPrefix = BrokerAMQP, itest.AMQPURL(), "platform-test-"
		}},
		{"sqs", "SQS (fauxqs)", itest.SQSEndpoint(), func(c *Config) {
			t.Setenv("AWS_ACCESS_KEY_ID", "test")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
			c.Broker, c.SQSEndpoint, c.TopicPrefix, c.SQSWaitTime = BrokerSQS, itest.SQSEndpoint(), "platform-test-", time.Second
		}},
		{"nats", "NATS", itest.NATSURL(), func(c *Config) {
			c.Broker, c.NATSURL, c.TopicPrefix = BrokerNATS, itest.NATSURL(), "platform-test-"
		}},
		{"redis", "Redis", itest.RedisAddr(), func(c *Config) { c.Store, c.RedisAddr = StoreRedis, itest.RedisAddr() }},
		{"postgres", "PostgreSQL", itest.PostgresDSN(), func(c *Config) { c.Store, c.PostgresDSN = StorePostgres, itest.PostgresDSN() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			itest.Require(t, tt.service, tt.addr)
			cfg := testConfig()
			tt.set(&cfg)
			rt, err := New(context.Background(), cfg, io.Discard)
			require.NoError(t, err)
			defer func() { require.NoError(t, rt.Close()) }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, rt.Hub.Health(ctx))
		})
	}
}

// TestKafkaBackend builds the runtime on kfake, franz-go's in-process
// Kafka cluster (no Kafka server runs here), and checks /readyz sees it.
func TestKafkaBackend(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer c.Close()
	cfg := testConfig()
	cfg.Broker, cfg.KafkaURL = BrokerKafka, "kafka://"+strings.Join(c.ListenAddrs(), ",")+"?partitions=1"
	require.NoError(t, cfg.Validate())
	rt, err := New(context.Background(), cfg, io.Discard)
	require.NoError(t, err)
	defer func() { require.NoError(t, rt.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, rt.Hub.Health(ctx))

	for _, tc := range []struct{ url, prefix, want string }{
		{"kafka://nohost", "", "-kafka-url"},
		{"kafka://a:1", "p-", "-topic-prefix"},
	} {
		bad := testConfig()
		bad.Broker, bad.KafkaURL, bad.TopicPrefix = BrokerKafka, tc.url, tc.prefix
		require.ErrorContains(t, bad.Validate(), tc.want)
	}
}
