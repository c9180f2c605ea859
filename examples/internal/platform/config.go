package platform

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/harvesthub/hub/broker/kafka"
)

// Broker and store kinds accepted by Config.Broker and Config.Store.
const (
	BrokerMemory  = "memory"
	BrokerAMQP    = "amqp"
	BrokerSQS     = "sqs"
	BrokerKafka   = "kafka"
	BrokerNATS    = "nats"
	StoreMemory   = "memory"
	StoreRedis    = "redis"
	StorePostgres = "postgres"
)

// Config holds the settings every service shares. Each field has a flag and
// an environment variable (named in its comment); the flag wins over the
// variable, the variable over the default.
type Config struct {
	// Service names the service in logs and metrics. Defaults to the name
	// given to Defaults.
	Service string
	// Broker is memory, amqp, sqs, kafka or nats (-broker, HUB_BROKER). Defaults to
	// memory, which only connects services inside one process.
	Broker string
	// AMQPURL is the RabbitMQ URL (-amqp-url, HUB_AMQP_URL). Defaults to
	// amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string
	// KafkaURL names the Kafka cluster (-kafka-url, HUB_KAFKA_URL):
	// kafka://host:port[,host:port...][?partitions=N&replication=N], see
	// kafka.ParseURL. Defaults to kafka://127.0.0.1:9092.
	KafkaURL string
	// NATSURL is the NATS server URL, JetStream enabled (-nats-url,
	// HUB_NATS_URL). Defaults to nats://127.0.0.1:4222.
	NATSURL string
	// SQSEndpoint is the SQS/SNS endpoint (-sqs-endpoint, HUB_SQS_ENDPOINT).
	// Defaults to empty: AWS itself.
	SQSEndpoint string
	// SQSRegion is the AWS region (-sqs-region, HUB_SQS_REGION). Defaults to
	// us-east-1.
	SQSRegion string
	// SQSWaitTime is the long-polling wait of one receive
	// (-sqs-wait-time, HUB_SQS_WAIT_TIME); it bounds how long a shutdown
	// waits for receives to return. Defaults to 0: the adapter's 20s.
	SQSWaitTime time.Duration
	// SQSVisibilityTimeout is how long a received, unacked message stays
	// hidden, so how soon a crashed worker's messages are delivered again
	// (-sqs-visibility-timeout, HUB_SQS_VISIBILITY_TIMEOUT). Defaults to 0:
	// the adapter's 30s.
	SQSVisibilityTimeout time.Duration
	// TopicPrefix is prepended to every exchange, queue and SNS topic the
	// broker creates (-topic-prefix, HUB_TOPIC_PREFIX), so several pipelines
	// can share one broker. Defaults to empty.
	TopicPrefix string
	// Store is the idempotency store: memory, redis or postgres (-store,
	// HUB_STORE). Defaults to memory (per process).
	Store string
	// RedisAddr is host:port of Redis (-redis-addr, HUB_REDIS_ADDR).
	// Defaults to 127.0.0.1:6379.
	RedisAddr string
	// PostgresDSN is the pgx connection string (-postgres-dsn,
	// HUB_POSTGRES_DSN). Defaults to
	// postgres://postgres@127.0.0.1:5432/hub?sslmode=disable.
	PostgresDSN string
	// Lease is how long a worker's claim on a message's idempotency key
	// lasts (-lease, HUB_LEASE); the hub extends it while retries run. It is
	// also how long the claims of a crashed worker hold back the
	// redelivery of its messages when the store is shared (redis,
	// postgres). Defaults to 30s: the example handlers are idempotent, so a
	// claim that lapses under a slow attempt costs a harmless second run,
	// while the hub's 5m default would stall recovery for minutes.
	Lease time.Duration
	// Listen is the HTTP address (-listen, HUB_LISTEN). Defaults to
	// 127.0.0.1:8080: a service is reachable from elsewhere only when its
	// deployment says so (the Kubernetes manifests set HUB_LISTEN=:8080).
	Listen string
	// ReadTimeout bounds reading one request, body included
	// (-read-timeout, HUB_READ_TIMEOUT): a client that sends its body
	// slowly loses the connection. Defaults to 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds handling a request and writing its response
	// (-write-timeout, HUB_WRITE_TIMEOUT). Defaults to 30s.
	WriteTimeout time.Duration
	// IdleTimeout is how long an idle keep-alive connection is kept
	// (-idle-timeout, HUB_IDLE_TIMEOUT). Defaults to 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header (-max-header-bytes,
	// HUB_MAX_HEADER_BYTES). Defaults to 64 KiB.
	MaxHeaderBytes int
	// MaxConns bounds the open HTTP connections (-max-conns,
	// HUB_MAX_CONNS); more wait to be accepted. Defaults to 1024.
	MaxConns int
	// TLSCert and TLSKey are the PEM files of the HTTPS certificate
	// (-tls-cert, -tls-key; HUB_TLS_CERT, HUB_TLS_KEY). Default to empty:
	// plain HTTP (TLS ends at the ingress or the mesh).
	TLSCert, TLSKey string
	// TLSClientCA is the PEM file of the CAs whose client certificates the
	// server verifies when presented (-tls-client-ca, HUB_TLS_CLIENT_CA).
	// Defaults to empty: client certificates are not asked for.
	TLSClientCA string
	// LogLevel is debug, info, warn or error (-log-level, HUB_LOG_LEVEL).
	// Defaults to info.
	LogLevel string
	// ShutdownTimeout bounds the drain on SIGTERM (-shutdown-timeout,
	// HUB_SHUTDOWN_TIMEOUT). Defaults to 25s, under Kubernetes' default 30s
	// grace period.
	ShutdownTimeout time.Duration
}

// Defaults returns the default Config of service, with the HUB_*
// environment variables applied.
func Defaults(service string) Config {
	c := Config{
		Service:         service,
		Broker:          env("HUB_BROKER", BrokerMemory),
		AMQPURL:         env("HUB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		KafkaURL:        env("HUB_KAFKA_URL", "kafka://127.0.0.1:9092"),
		NATSURL:         env("HUB_NATS_URL", "nats://127.0.0.1:4222"),
		SQSEndpoint:     env("HUB_SQS_ENDPOINT", ""),
		SQSRegion:       env("HUB_SQS_REGION", "us-east-1"),
		TopicPrefix:     env("HUB_TOPIC_PREFIX", ""),
		Store:           env("HUB_STORE", StoreMemory),
		RedisAddr:       env("HUB_REDIS_ADDR", "127.0.0.1:6379"),
		PostgresDSN:     env("HUB_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/hub?sslmode=disable"),
		Listen:          env("HUB_LISTEN", "127.0.0.1:8080"),
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    30 * time.Second,
		IdleTimeout:     60 * time.Second,
		MaxHeaderBytes:  EnvInt("HUB_MAX_HEADER_BYTES", 64<<10),
		MaxConns:        EnvInt("HUB_MAX_CONNS", 1024),
		TLSCert:         env("HUB_TLS_CERT", ""),
		TLSKey:          env("HUB_TLS_KEY", ""),
		TLSClientCA:     env("HUB_TLS_CLIENT_CA", ""),
		LogLevel:        env("HUB_LOG_LEVEL", "info"),
		ShutdownTimeout: 25 * time.Second,
		Lease:           30 * time.Second,
	}
	envDuration("HUB_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	envDuration("HUB_LEASE", &c.Lease)
	envDuration("HUB_READ_TIMEOUT", &c.ReadTimeout)
	envDuration("HUB_WRITE_TIMEOUT", &c.WriteTimeout)
	envDuration("HUB_IDLE_TIMEOUT", &c.IdleTimeout)
	envDuration("HUB_SQS_WAIT_TIME", &c.SQSWaitTime)
	envDuration("HUB_SQS_VISIBILITY_TIMEOUT", &c.SQSVisibilityTimeout)
	return c
}

// envDuration sets *d from the variable name when it holds a duration.
func envDuration(name string, d *time.Duration) {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		*d = v
	}
}

func env(name, def string) string { return cmp.Or(os.Getenv(name), def) }

// Env returns the environment variable name, or def when it is unset or
// empty. Services use it for the defaults of their own flags.
func Env(name, def string) string { return env(name, def) }

// EnvInt is Env for an integer; an unparsable value yields def.
func EnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// RegisterFlags defines the shared flags on fs, with c's values (so the
// environment) as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Broker, "broker", c.Broker, "message broker: memory, amqp, sqs, kafka or nats (env HUB_BROKER)")
	fs.StringVar(&c.KafkaURL, "kafka-url", c.KafkaURL, "Kafka cluster, kafka://host:port[,host:port...] (env HUB_KAFKA_URL)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "NATS server URL (env HUB_NATS_URL)")
	fs.StringVar(&c.AMQPURL, "amqp-url", c.AMQPURL, "RabbitMQ URL (env HUB_AMQP_URL)")
	fs.StringVar(&c.SQSEndpoint, "sqs-endpoint", c.SQSEndpoint, "SQS/SNS endpoint, empty for AWS (env HUB_SQS_ENDPOINT)")
	fs.StringVar(&c.SQSRegion, "sqs-region", c.SQSRegion, "AWS region (env HUB_SQS_REGION)")
	fs.DurationVar(&c.SQSWaitTime, "sqs-wait-time", c.SQSWaitTime, "SQS long-polling wait, 0 for 20s (env HUB_SQS_WAIT_TIME)")
	fs.DurationVar(&c.SQSVisibilityTimeout, "sqs-visibility-timeout", c.SQSVisibilityTimeout, "SQS visibility timeout, 0 for 30s (env HUB_SQS_VISIBILITY_TIMEOUT)")
	fs.StringVar(&c.TopicPrefix, "topic-prefix", c.TopicPrefix, "prefix of every exchange, queue and SNS topic (env HUB_TOPIC_PREFIX)")
	fs.StringVar(&c.Store, "store", c.Store, "idempotency store: memory, redis or postgres (env HUB_STORE)")
	fs.StringVar(&c.RedisAddr, "redis-addr", c.RedisAddr, "Redis host:port (env HUB_REDIS_ADDR)")
	fs.StringVar(&c.PostgresDSN, "postgres-dsn", c.PostgresDSN, "PostgreSQL connection string (env HUB_POSTGRES_DSN)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "idempotency claim lease; a crashed worker's messages wait this long with a shared store (env HUB_LEASE)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP listen address (env HUB_LISTEN)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "bound on reading one request, body included (env HUB_READ_TIMEOUT)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "bound on handling a request and writing its response (env HUB_WRITE_TIMEOUT)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "idle keep-alive connections are closed after this (env HUB_IDLE_TIMEOUT)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "request header size limit (env HUB_MAX_HEADER_BYTES)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "open HTTP connections at most; more wait (env HUB_MAX_CONNS)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "HTTPS certificate PEM file (env HUB_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "HTTPS private key PEM file (env HUB_TLS_KEY)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "CA PEM file verifying client certificates when given (env HUB_TLS_CLIENT_CA)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (env HUB_LOG_LEVEL)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "drain deadline on SIGTERM (env HUB_SHUTDOWN_TIMEOUT)")
}

// Validate rejects settings the services cannot run with.
func (c Config) Validate() error {
	var errs []error
	switch c.Broker {
	case BrokerMemory, BrokerAMQP, BrokerSQS, BrokerNATS:
	case BrokerKafka:
		if _, err := kafka.ParseURL(c.KafkaURL); err != nil {
			errs = append(errs, fmt.Errorf("platform: -kafka-url: %w", err))
		}
		if c.TopicPrefix != "" {
			errs = append(errs, errors.New("platform: -topic-prefix is not supported with -broker kafka; name topics per cluster instead"))
		}
	default:
		errs = append(errs, fmt.Errorf("platform: -broker %q; use memory, amqp, sqs, kafka or nats", c.Broker))
	}
	if c.Broker == BrokerAMQP {
		// The URL holds a password: say what is wrong, never echo it.
		if u, err := url.Parse(c.AMQPURL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			errs = append(errs, errors.New("platform: -amqp-url is not an amqp:// or amqps:// URL with a host (write a % in the user name or password as %25)"))
		}
	}
	switch c.Store {
	case StoreMemory, StoreRedis, StorePostgres:
	default:
		errs = append(errs, fmt.Errorf("platform: -store %q; use memory, redis or postgres", c.Store))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("platform: -listen is empty; set an address such as :8080"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("platform: set both -tls-cert and -tls-key, or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("platform: -tls-client-ca needs -tls-cert and -tls-key: client certificates are verified over HTTPS"))
	}
	if c.Lease <= 0 {
		errs = append(errs, fmt.Errorf("platform: -lease %v; set a positive duration longer than one handler attempt", c.Lease))
	}
	if c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("platform: -read-timeout %v, -write-timeout %v and -idle-timeout %v must be positive durations", c.ReadTimeout, c.WriteTimeout, c.IdleTimeout))
	}
	if c.MaxHeaderBytes <= 0 || c.MaxConns <= 0 {
		errs = append(errs, fmt.Errorf("platform: -max-header-bytes %d and -max-conns %d must be positive", c.MaxHeaderBytes, c.MaxConns))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("platform: -shutdown-timeout %v; set a positive duration", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// ParseLevel parses a -log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("platform: -log-level %q; use debug, info, warn or error", s)
	}
	return l, nil
}

func urlParse(raw string) (*url.URL, error) { return url.Parse(raw) }
