package nats

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/harvesthub/hub/broker"
)

// Defaults of [Config].
const (
	// URLDefault is the server the zero Config connects to.
	URLDefault = natsgo.DefaultURL
	// StreamPrefixDefault starts the name of every stream the adapter
	// creates.
	StreamPrefixDefault = "hub_"
	// SubjectPrefixDefault is the first token of every subject the adapter
	// publishes to.
	SubjectPrefixDefault = "hub"
	// AckWaitDefault is how long JetStream waits for the ack of a delivered
	// message before it delivers it again: the hub's lease (hub.LeaseDefault).
	AckWaitDefault = 30 * time.Second
	// MaxAckPendingDefault bounds the unacked messages of one consumer
	// group, all its subscriptions together.
	MaxAckPendingDefault = 10_000
	// DuplicateWindowDefault is how long a stream remembers Nats-Msg-Id
	// values to drop a message published twice (JetStream's default).
	DuplicateWindowDefault = 2 * time.Minute
	// PollWaitDefault is how long one pull request waits for messages.
	PollWaitDefault = time.Second
	// ConnectTimeoutDefault bounds New when its context has no deadline.
	ConnectTimeoutDefault = 5 * time.Second
	// PublishTimeoutDefault bounds Publish, which has no context.
	PublishTimeoutDefault = 30 * time.Second
)

// Config configures a [Broker]. The zero value connects to
// nats://127.0.0.1:4222 without TLS.
type Config struct {
	// URL is the server URL, or several separated by commas:
	// nats://host:4222, tls://host:4222 (TLS without a client certificate
	// unless TLS is set), with user:password@ or a token@ when the server
	// wants them. Defaults to [URLDefault].
	URL string
	// TLS, when set, is the client certificate and the CAs that verify the
	// server (mutual TLS); rotated files are picked up on the next
	// (re)connection. An empty ServerName is the host of the first URL
	// (several servers with different names need it set, or certificates
	// that all carry it). Defaults to nil.
	TLS *broker.TLSFiles
	// Name is the connection name the server shows (monitoring, logs).
	// Defaults to "harvest-hub".
	Name string
	// StreamPrefix starts every stream name, [A-Za-z0-9_-], at most 32
	// characters; environments sharing one account use different prefixes.
	// Defaults to [StreamPrefixDefault].
	StreamPrefix string
	// SubjectPrefix is the first subject token, [A-Za-z0-9_-], at most 32
	// characters. Defaults to [SubjectPrefixDefault].
	SubjectPrefix string
	// AckWait is how long a delivered, unacked message stays with its
	// subscriber before JetStream delivers it again. While the hub works on
	// it the subscription tells JetStream so every AckWait/3 (a slow
	// handler keeps its message); a crashed process stops, and the message
	// comes back within AckWait. Keep it equal to the hub's Config.Lease.
	// At least 1s. Defaults to [AckWaitDefault].
	AckWait time.Duration
	// MaxDeliver bounds how often JetStream delivers one message to a
	// group; past it the message stays in the stream and is never
	// delivered again. The hub counts attempts and dead-letters on its
	// own, so the default is -1: no bound. Defaults to -1.
	MaxDeliver int
	// MaxAckPending bounds the unacked messages of one consumer group, all
	// its subscriptions together. Defaults to [MaxAckPendingDefault].
	MaxAckPending int
	// DuplicateWindow is how long a stream drops a message whose
	// Nats-Msg-Id it has stored. Defaults to [DuplicateWindowDefault].
	DuplicateWindow time.Duration
	// MaxAge drops messages older than it from a stream, acked or not.
	// Defaults to 0: kept until every group acked them.
	MaxAge time.Duration
	// Replicas of each stream (clustered servers: 3). Defaults to 1.
	Replicas int
	// MemoryStorage keeps streams in memory instead of on disk (lost when
	// the server restarts). Defaults to false.
	MemoryStorage bool
	// PollWait is how long one pull request waits for messages. A
	// subscription that ends waits for its pull request to expire (so no
	// message is left to wait AckWait), so it also bounds how long closing
	// a subscription or the Broker takes. Defaults to [PollWaitDefault].
	PollWait time.Duration
	// NackDelay is how long a nacked message waits before JetStream
	// delivers it again. Defaults to 0: at once.
	NackDelay time.Duration
	// ConnectTimeout bounds connecting when New's context has no deadline.
	// Defaults to [ConnectTimeoutDefault].
	ConnectTimeout time.Duration
	// PublishTimeout bounds Publish (PublishContext uses its context).
	// Defaults to [PublishTimeoutDefault].
	PublishTimeout time.Duration
	// Logger receives the adapter's warnings (lost connections, failed
	// acks). Defaults to slog.Default().
	Logger *slog.Logger
}

const maxPrefix = 32

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// withDefaults returns a copy of c with defaults filled in, or an error
// naming every invalid setting.
func (c Config) withDefaults() (Config, error) {
	c.URL = cmp.Or(c.URL, URLDefault)
	c.Name = cmp.Or(c.Name, "harvest-hub")
	c.StreamPrefix = cmp.Or(c.StreamPrefix, StreamPrefixDefault)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, SubjectPrefixDefault)
	c.AckWait = cmp.Or(c.AckWait, AckWaitDefault)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, -1)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, MaxAckPendingDefault)
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, DuplicateWindowDefault)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.PollWait = cmp.Or(c.PollWait, PollWaitDefault)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, ConnectTimeoutDefault)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, PublishTimeoutDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("nats: Config."+format, args...)) }
	if !prefixPattern.MatchString(c.StreamPrefix) || len(c.StreamPrefix) > maxPrefix {
		bad("StreamPrefix %q must match [A-Za-z0-9_-]* and be at most %d characters", c.StreamPrefix, maxPrefix)
	}
	if !prefixPattern.MatchString(c.SubjectPrefix) || len(c.SubjectPrefix) > maxPrefix {
		bad("SubjectPrefix %q must match [A-Za-z0-9_-]* and be at most %d characters", c.SubjectPrefix, maxPrefix)
	}
	if c.AckWait < time.Second {
		bad("AckWait %v must be at least 1s", c.AckWait)
	}
	if c.MaxDeliver < -1 || c.MaxDeliver == 1 {
		bad("MaxDeliver %d must be -1 (no bound) or at least 2 (a nacked message must come back)", c.MaxDeliver)
	}
	if c.MaxAckPending < 1 {
		bad("MaxAckPending %d must be at least 1", c.MaxAckPending)
	}
	if c.DuplicateWindow < time.Second {
		bad("DuplicateWindow %v must be at least 1s", c.DuplicateWindow)
	}
	if c.MaxAge < 0 {
		bad("MaxAge %v must not be negative", c.MaxAge)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("Replicas %d must be between 1 and 5", c.Replicas)
	}
	if c.PollWait < 100*time.Millisecond {
		bad("PollWait %v must be at least 100ms", c.PollWait)
	}
	if c.NackDelay < 0 {
		bad("NackDelay %v must not be negative", c.NackDelay)
	}
	if c.ConnectTimeout < 0 || c.PublishTimeout < 0 {
		bad("ConnectTimeout and PublishTimeout must not be negative")
	}
	return c, errors.Join(errs...)
}
