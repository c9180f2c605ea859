package amqp

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// ErrQueueType is wrapped by the error of a declaration that finds its
// queue existing with the other type (classic where Config.QueueType says
// quorum, or the reverse). The error names the queue and both types.
// RabbitMQ cannot change a queue's type: move its messages (a shovel, or
// hubctl for dead letters) and delete it, or keep the old type.
var ErrQueueType = errors.New("amqp: queue exists with another type")

// ErrQueueArguments is wrapped by the error of a declaration that finds its
// queue existing with other arguments than this Config declares (for
// instance a quorum queue declared before Config.DeliveryLimit was set).
var ErrQueueArguments = errors.New("amqp: queue exists with other arguments")

// isDeadLetterTopic reports whether topic is a dead-letter topic, whose
// queues get no delivery limit (their own letters would have nowhere to go).
func (b *Broker) isDeadLetterTopic(topic string) bool {
	return strings.HasSuffix(topic, b.cfg.DeadLetterSuffix)
}

// limited reports whether the group queues of topic have a delivery limit
// that dead-letters to the topic's dead-letter topic.
func (b *Broker) limited(topic string) bool {
	return b.cfg.QueueType == QueueQuorum && b.cfg.DeliveryLimit > 0 && !b.isDeadLetterTopic(topic)
}

// groupQueueArgs are the arguments of a group queue of topic. The type is
// always named, classic too, so that a declaration meeting a queue of the
// other type fails with both types in RabbitMQ's message.
func (b *Broker) groupQueueArgs(topic string) amqp091.Table {
	args := amqp091.Table{"x-queue-type": b.cfg.QueueType}
	if b.limited(topic) {
		args["x-delivery-limit"] = int64(b.cfg.DeliveryLimit)
		args["x-dead-letter-exchange"] = b.exchangeName(topic + b.cfg.DeadLetterSuffix)
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	return args
}

// delayQueue returns the name and arguments of the delay queue of tier
// that dead-letters to the default exchange with routing key (a group's
// queue), or, when key is empty, to exchange (every group of a topic).
//
// On quorum queues the dead-lettering is at-least-once: RabbitMQ forwards
// an expired message with publisher confirms and removes it from the delay
// queue only once the target confirmed it, so a node lost during the hop
// loses nothing (classic queues dead-letter at most once). That needs
// x-overflow reject-publish. Quorum delay queues have their own names
// ("hub.qdelay."), so switching QueueType never meets an old classic delay
// queue, whose messages still reach their target, and are kept an hour
// longer when unused.
func (b *Broker) delayQueue(tier time.Duration, exchange, key string) (string, amqp091.Table) {
	args := amqp091.Table{
		"x-message-ttl":          tier.Milliseconds(),
		"x-expires":              (2*tier + time.Minute).Milliseconds(),
		"x-dead-letter-exchange": exchange,
	}
	prefix := "hub.delay."
	if b.cfg.QueueType == QueueQuorum {
		// An hour more before an unused quorum delay queue is deleted:
		// with at-least-once dead-lettering, messages RabbitMQ could not
		// forward yet stay in it, and its deletion would drop them (seen
		// on RabbitMQ 3.10.8 after its leader's node was killed). The hour
		// lets an operator see them (hub.qdelay.* queues with messages)
		// and recover them.
		args["x-expires"] = (2*tier + time.Hour).Milliseconds()
		prefix = "hub.qdelay."
		args["x-queue-type"] = QueueQuorum
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	name := b.cfg.QueuePrefix + prefix + tier.String() + "."
	if key != "" {
		args["x-dead-letter-routing-key"] = key
		return name + key, args
	}
	return name + "exchange." + exchange, args
}

// inequivalent parses RabbitMQ's PRECONDITION_FAILED reason for a queue
// redeclared with other arguments:
//
//	inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'quorum' but current is 'classic'
//	inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'
var inequivalent = regexp.MustCompile(`inequivalent arg '([^']+)' for queue '[^']*' in vhost '[^']*': received (?:the value )?(none|'[^']*')[^:]*? but current is (?:the value )?(none|'[^']*')`)

// declareError translates the error of declaring queue: a queue of the
// other type wraps ErrQueueType, other arguments ErrQueueArguments; both
// keep RabbitMQ's error in the chain.
func (b *Broker) declareError(what, queue string, err error) error {
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != amqp091.PreconditionFailed {
		return fmt.Errorf("amqp: declare %s %s: %w", what, queue, err)
	}
	m := inequivalent.FindStringSubmatch(ae.Reason)
	if m == nil {
		return fmt.Errorf("amqp: declare %s %s: %w", what, queue, err)
	}
	arg, current := m[1], strings.Trim(m[3], "'")
	if arg == "x-queue-type" {
		if current == "none" {
			current = QueueClassic
		}
		return fmt.Errorf("amqp: %s %s exists as a %s queue, but Config.QueueType is %s: %w (%w)",
			what, queue, current, b.cfg.QueueType, ErrQueueType, err)
	}
	return fmt.Errorf("amqp: %s %s exists with %s %s, this configuration declares it with %s: %w (%w)",
		what, queue, arg, current, strings.Trim(m[2], "'"), ErrQueueArguments, err)
}

// Metadata keys of dead letters (package hub, metadata.go).
const (
	keyDLQReason     = "hub-dlq-reason"     // hub.KeyDLQReason
	keyDLQError      = "hub-dlq-error"      // hub.KeyDLQError
	keyOriginalTopic = "hub-original-topic" // hub.KeyOriginalTopic
)

// ReasonDeliveryLimit is the hub-dlq-reason of a message RabbitMQ
// dead-lettered because it reached Config.DeliveryLimit.
const ReasonDeliveryLimit = "delivery-limit"

// markDeadLetter gives a message RabbitMQ dead-lettered over a quorum
// queue's delivery limit the metadata of a hub dead letter (reason, error,
// original topic), so hubctl and package dlq show why it is there. Hub dead
// letters, and messages dead-lettered by the delay queues' TTL, are left
// alone.
func (b *Broker) markDeadLetter(d *amqp091.Delivery, msg *message.Message) {
	if reason, _ := d.Headers["x-first-death-reason"].(string); reason != "delivery_limit" || msg.Metadata.Get(keyDLQReason) != "" {
		return
	}
	msg.Metadata.Set(keyDLQReason, ReasonDeliveryLimit)
	msg.Metadata.Set(keyDLQError, fmt.Sprintf("RabbitMQ delivered it %d times without an ack (x-delivery-limit)", b.cfg.DeliveryLimit))
	if x, ok := d.Headers["x-first-death-exchange"].(string); ok && x != "" {
		msg.Metadata.Set(keyOriginalTopic, strings.TrimPrefix(x, b.cfg.ExchangePrefix))
	}
}
