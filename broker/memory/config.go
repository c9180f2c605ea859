package memory

import (
	"errors"
	"fmt"
	"log/slog"
)

// Defaults of [Config].
const (
	// QueueSizeDefault is the default bound of each group's queue.
	QueueSizeDefault = 1024
	// MaxDelayedDefault is the default bound on pending delayed messages.
	MaxDelayedDefault = 65536
)

// ErrQueueFull is returned, wrapped with the topic and group, by Publish
// when a queue is full and [Config.Full] is [Reject], and by PublishDelayed
// when [Config.MaxDelayed] messages are pending already.
var ErrQueueFull = errors.New("memory: queue full")

// FullPolicy says what Publish does when a group's queue is full.
type FullPolicy int

const (
	// Block makes Publish wait until the queue has room, the message's
	// context is done or the broker is closed.
	Block FullPolicy = iota
	// Reject makes Publish fail at once with [ErrQueueFull].
	Reject
)

func (p FullPolicy) String() string {
	switch p {
	case Block:
		return "block"
	case Reject:
		return "reject"
	default:
		return fmt.Sprintf("FullPolicy(%d)", int(p))
	}
}

// Config configures a [Broker]. The zero Config is valid.
type Config struct {
	// QueueSize bounds the messages waiting in each consumer group's
	// queue. Defaults to
	// [QueueSizeDefault] (1024).
	QueueSize int
	// BacklogSize bounds the messages waiting in each topic's implicit
	// backlog (a topic no group was declared for: a dead-letter topic, or
	// a Pipe output nobody consumes yet), like QueueSize bounds a group's
	// queue. Defaults to 0: unbounded, so that publishing to a topic
	// nobody consumes never blocks its publisher (a real broker keeps such
	// messages in a queue too); set it to test a full backlog.
	BacklogSize int
	// Full says what Publish does when a queue is full. Defaults to
	// [Block].
	Full FullPolicy
	// MaxMessageSize is the largest message, payload plus UUID plus
	// metadata keys and values ([broker.MessageSize]), Publish and
	// PublishDelayed accept; a larger one is refused with an error
	// wrapping [broker.ErrMessageTooLarge] and nothing of that call is
	// published. It lets tests give the hub a broker with a size limit,
	// as SQS and RabbitMQ have. Defaults to 0: no limit.
	MaxMessageSize int
	// MaxDelayed bounds the delayed messages waiting for their time; beyond
	// it PublishDelayed returns [ErrQueueFull]. Defaults to
	// [MaxDelayedDefault] (65536).
	MaxDelayed int
	// Logger receives the broker's few log lines (Close, injected faults).
	// Defaults to a logger that discards everything.
	Logger *slog.Logger
}

// withDefaults validates c and returns a copy with the defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.QueueSize < 0 {
		return c, fmt.Errorf("memory: Config.QueueSize is %d: set a positive bound, or 0 for the default %d", c.QueueSize, QueueSizeDefault)
	}
	if c.BacklogSize < 0 {
		return c, fmt.Errorf("memory: Config.BacklogSize is %d: set a positive bound, or 0 for no bound", c.BacklogSize)
	}
	if c.MaxMessageSize < 0 {
		return c, fmt.Errorf("memory: Config.MaxMessageSize is %d: set a positive limit in bytes, or 0 for no limit", c.MaxMessageSize)
	}
	if c.MaxDelayed < 0 {
		return c, fmt.Errorf("memory: Config.MaxDelayed is %d: set a positive bound, or 0 for the default %d", c.MaxDelayed, MaxDelayedDefault)
	}
	if c.Full != Block && c.Full != Reject {
		return c, fmt.Errorf("memory: Config.Full is %v: set memory.Block (the default) or memory.Reject", c.Full)
	}
	if c.QueueSize == 0 {
		c.QueueSize = QueueSizeDefault
	}
	if c.MaxDelayed == 0 {
		c.MaxDelayed = MaxDelayedDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
