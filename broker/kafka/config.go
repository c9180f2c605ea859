package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/harvesthub/hub/broker"
)

// Defaults of [Config].
const (
	// MaxMessageBytesDefault is Kafka's default message.max.bytes (1 MiB
	// plus the record batch overhead), rounded down.
	MaxMessageBytesDefault = 1 << 20
	// RequestTimeoutDefault bounds admin requests (topic creation, offset
	// listing) and a subscription's group leave.
	RequestTimeoutDefault = 10 * time.Second
	// PublishTimeoutDefault bounds Publish, which takes no context.
	PublishTimeoutDefault = 30 * time.Second
	// CommitIntervalDefault is how often acked offsets are committed.
	CommitIntervalDefault = time.Second
	// SessionTimeoutDefault is the group session timeout: how long the
	// cluster waits for a silent member before its partitions go to the
	// others.
	SessionTimeoutDefault = 10 * time.Second
)

// Config configures a [Broker]. Only Brokers is required.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// TLS, when set, connects with mutual TLS (the files are read again
	// when they change).
	TLS *broker.TLSFiles
	// ClientID is sent to the cluster. Defaults to "hub".
	ClientID string
	// Partitions and ReplicationFactor are used for the topics the broker
	// creates (every topic it publishes to or subscribes, and its retry
	// topics). Zero means the cluster's default (num.partitions,
	// default.replication.factor). Per-partition order holds; more
	// partitions spread a group over more members.
	Partitions        int32
	ReplicationFactor int16
	// MaxMessageBytes is the largest record the broker produces, framing
	// included; set it to the cluster's message.max.bytes (or the topic's
	// max.message.bytes) when it differs. Defaults to 1 MiB.
	MaxMessageBytes int
	// RequestTimeout bounds admin requests. Defaults to 10s.
	RequestTimeout time.Duration
	// PublishTimeout bounds Publish (PublishContext takes the caller's
	// context instead). Defaults to 30s.
	PublishTimeout time.Duration
	// CommitInterval is how often a subscription commits the offsets its
	// handlers acked; they are also committed when partitions move and when
	// the subscription ends. Defaults to 1s; at least 100ms.
	CommitInterval time.Duration
	// SessionTimeout is the consumer group session timeout. Defaults to 10s.
	SessionTimeout time.Duration
	// Logger receives the adapter's warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		return c, errors.New("kafka: Config.Brokers is empty; set the seed brokers, host:port")
	}
	if c.Partitions < 0 || c.ReplicationFactor < 0 {
		return c, fmt.Errorf("kafka: Config.Partitions %d and ReplicationFactor %d must not be negative", c.Partitions, c.ReplicationFactor)
	}
	if c.MaxMessageBytes < 0 || (c.MaxMessageBytes > 0 && c.MaxMessageBytes < 4*recordSlack) {
		return c, fmt.Errorf("kafka: Config.MaxMessageBytes %d is too small; use at least %d", c.MaxMessageBytes, 4*recordSlack)
	}
	for _, d := range []time.Duration{c.RequestTimeout, c.PublishTimeout, c.CommitInterval, c.SessionTimeout} {
		if d < 0 {
			return c, fmt.Errorf("kafka: Config durations must not be negative (got %v)", d)
		}
	}
	if c.CommitInterval != 0 && c.CommitInterval < 100*time.Millisecond {
		return c, fmt.Errorf("kafka: Config.CommitInterval %v is under franz-go's minimum of 100ms", c.CommitInterval)
	}
	c.ClientID = cmp.Or(c.ClientID, "hub")
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, MaxMessageBytesDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, PublishTimeoutDefault)
	c.CommitInterval = cmp.Or(c.CommitInterval, CommitIntervalDefault)
	c.SessionTimeout = cmp.Or(c.SessionTimeout, SessionTimeoutDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
