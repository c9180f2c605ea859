package amqp

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/harvesthub/hub/broker"
)

// Defaults of [Config].
const (
	URLDefault               = "amqp://guest:guest@127.0.0.1:5672/"
	PublisherChannelsDefault = 8
	PrefetchDefault          = 1
	ReconnectMinDefault      = 100 * time.Millisecond
	ReconnectMaxDefault      = 5 * time.Second
	PublishTimeoutDefault    = 30 * time.Second
	DialTimeoutDefault       = 10 * time.Second
	// MaxMessageSizeDefault is RabbitMQ 4's default max_message_size
	// (16 MiB; RabbitMQ 3.8 to 3.13 default to 128 MiB).
	MaxMessageSizeDefault   = 16 << 20
	DeliveryLimitDefault    = 20
	DeadLetterSuffixDefault = ".dlq"
)

// Queue types of [Config.QueueType].
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// Config configures a [Broker]. The zero value connects to a local RabbitMQ
// as guest with durable topology and publisher confirms.
type Config struct {
	// URL of the RabbitMQ server, amqp:// or amqps://. Several nodes of a
	// cluster may be given comma-separated ("amqp://h1/,amqp://h2/"), like
	// URLs. Defaults to URLDefault (amqp://guest:guest@127.0.0.1:5672/)
	// unless URLs is set.
	URL string
	// URLs are the nodes of a RabbitMQ cluster. The broker connects to the
	// first that answers; when that connection is lost it reconnects to the
	// next one in turn (then round again, with backoff between rounds), so
	// a lost node is left for a live one at once. Setting both URL and URLs
	// is an error. Defaults to nil (URL alone).
	URLs []string
	// TLS, when set, is the mutual-TLS identity used for amqps:// URLs;
	// rotated files are picked up at the next (re)connection. Setting it
	// with an amqp:// URL is an error. Defaults to nil (amqps:// URLs then
	// verify the server against the system pool, without a client
	// certificate).
	TLS *broker.TLSFiles
	// Transient declares exchanges and queues non-durable and publishes
	// messages non-persistent: faster, but a broker restart loses them.
	// Defaults to false (durable topology, persistent messages).
	Transient bool
	// QueueType is the type of every queue the broker declares (group
	// queues, the dead-letter topics' queues, delay queues): QueueClassic or
	// QueueQuorum. Quorum queues are replicated over a cluster's nodes,
	// forward delayed retries with at-least-once dead-lettering, and count
	// redeliveries exactly (x-delivery-count, read as hub-delivery-count);
	// classic queues live on one node and only flag redeliveries, so a
	// redelivered message reads as its second delivery. Declaring a queue
	// that exists with the other type fails with an error wrapping
	// ErrQueueType. Defaults to QueueClassic (see docs/DECISIONS.md).
	QueueType string
	// DeliveryLimit is the x-delivery-limit of quorum group queues: a
	// message RabbitMQ has delivered that many times without an ack (its
	// consumers crashed or nacked it each time) is dead-lettered, with
	// at-least-once dead-lettering, to the topic's dead-letter topic
	// (<topic>+DeadLetterSuffix), where hubctl and package dlq find it with
	// reason "delivery-limit". The hub's own retries publish new messages,
	// so they do not count against it. -1 sets no limit (RabbitMQ 3.x then
	// redelivers forever; 4.x applies its own default of 20 and drops the
	// message). Ignored for classic queues. Defaults to 20.
	DeliveryLimit int
	// DeadLetterSuffix names a topic's dead-letter topic, as the hub's
	// Config.DeadLetterSuffix does: set both alike. Used for quorum queues'
	// DeliveryLimit. Defaults to ".dlq".
	DeadLetterSuffix string
	// PublisherChannels is the number of AMQP channels publishes are spread
	// over; each is in confirm mode when Confirms is on. Defaults to 8.
	PublisherChannels int
	// NoConfirms turns publisher confirms off: Publish then returns once the
	// messages are written to the socket, and a broker crash can lose them.
	// Defaults to false (confirms on: Publish returns after the broker has
	// confirmed every message, confirms awaited together, not one by one).
	NoConfirms bool
	// Prefetch is the basic.qos of subscriptions whose Group.Prefetch is
	// zero (Subscribe, and SubscribeGroup without a Prefetch). Deliveries
	// of one subscription are handed out concurrently up to the prefetch.
	// Defaults to 1; a Group.Prefetch above zero takes precedence.
	Prefetch int
	// ExchangePrefix and QueuePrefix are prepended to every exchange and
	// queue name. Default to "".
	ExchangePrefix string
	QueuePrefix    string
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// reconnection attempts after the connection is lost. Reconnection goes
	// on until Close. Default to 100ms and 5s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// PublishTimeout bounds how long Publish (which takes no context) waits
	// for a connection and for its confirms. Defaults to 30s.
	PublishTimeout time.Duration
	// DialTimeout bounds one TCP (and TLS) connection attempt. Defaults to
	// 10s.
	DialTimeout time.Duration
	// MaxMessageSize is the server's max_message_size, which AMQP does not
	// tell clients: a publish with a larger payload is refused before it
	// is sent, with an error wrapping broker.ErrMessageTooLarge, instead of
	// costing its channel. Defaults to [MaxMessageSizeDefault].
	MaxMessageSize int
	// Logger receives connection losses and reconnections. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the bad setting.
func (c Config) withDefaults() (Config, error) {
	if c.URL != "" && len(c.URLs) > 0 {
		return c, errors.New("amqp: set Config.URL or Config.URLs, not both")
	}
	if len(c.URLs) == 0 {
		for u := range strings.SplitSeq(cmp.Or(c.URL, URLDefault), ",") {
			c.URLs = append(c.URLs, strings.TrimSpace(u))
		}
	} else {
		c.URLs = slices.Clone(c.URLs)
	}
	c.URL = strings.Join(c.URLs, ",")
	c.DeliveryLimit = cmp.Or(c.DeliveryLimit, DeliveryLimitDefault)
	c.DeadLetterSuffix = cmp.Or(c.DeadLetterSuffix, DeadLetterSuffixDefault)
	c.QueueType = cmp.Or(c.QueueType, QueueClassic)
	c.PublisherChannels = cmp.Or(c.PublisherChannels, PublisherChannelsDefault)
	c.Prefetch = cmp.Or(c.Prefetch, PrefetchDefault)
	c.ReconnectMin = cmp.Or(c.ReconnectMin, ReconnectMinDefault)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, ReconnectMaxDefault)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, PublishTimeoutDefault)
	c.DialTimeout = cmp.Or(c.DialTimeout, DialTimeoutDefault)
	c.MaxMessageSize = cmp.Or(c.MaxMessageSize, MaxMessageSizeDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	for _, raw := range c.URLs {
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			return c, errors.New("amqp: Config.URLs: empty URL")
		case err != nil:
			return c, fmt.Errorf("amqp: Config.URL: %w", err)
		case u.Scheme != "amqp" && u.Scheme != "amqps":
			return c, fmt.Errorf("amqp: Config.URL %q: scheme must be amqp or amqps", redact(raw))
		case c.TLS != nil && u.Scheme != "amqps":
			return c, fmt.Errorf("amqp: Config.TLS is set but Config.URL is not amqps:// (%q)", redact(raw))
		}
	}
	switch {
	case c.DeliveryLimit < -1:
		return c, fmt.Errorf("amqp: Config.DeliveryLimit %d: must be positive, or -1 for none", c.DeliveryLimit)
	case c.QueueType != QueueClassic && c.QueueType != QueueQuorum:
		return c, fmt.Errorf("amqp: Config.QueueType %q: use %q or %q", c.QueueType, QueueClassic, QueueQuorum)
	case c.QueueType == QueueQuorum && c.Transient:
		return c, errors.New("amqp: quorum queues are always durable; unset Config.Transient")
	case c.PublisherChannels < 0:
		return c, fmt.Errorf("amqp: Config.PublisherChannels %d: must be positive", c.PublisherChannels)
	case c.Prefetch < 0:
		return c, fmt.Errorf("amqp: Config.Prefetch %d: must be positive", c.Prefetch)
	case c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin:
		return c, fmt.Errorf("amqp: Config.ReconnectMin %v and ReconnectMax %v: need 0 < min <= max", c.ReconnectMin, c.ReconnectMax)
	case c.MaxMessageSize < 0:
		return c, fmt.Errorf("amqp: Config.MaxMessageSize %d: must be positive (0 for the default %d)", c.MaxMessageSize, MaxMessageSizeDefault)
	case c.PublishTimeout < 0 || c.DialTimeout < 0:
		return c, errors.New("amqp: Config.PublishTimeout and DialTimeout must be positive")
	}
	return c, nil
}

// redact hides the password of an AMQP URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
