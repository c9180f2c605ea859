// Package amqp is the RabbitMQ adapter of the hub: a [broker.Broker],
// [broker.Delayer] and [broker.Declarer] built directly on
// github.com/rabbitmq/amqp091-go. It passes Watermill's universal Pub/Sub
// test suite, reconnect test included.
//
//	b, err := amqp.New(amqp.Config{URL: "amqps://rabbit:5671/", TLS: &broker.TLSFiles{...}})
//
// # Topology
//
// A topic is a durable fanout exchange named after it. A consumer group is a
// durable queue "<topic>.<group>" bound to the exchange; the topic's default
// group (Subscribe, or a group with an empty name) is the queue "<topic>".
// Subscribers of one group, in any process, compete for its messages; every
// group gets every message. Publish declares the exchange and the default
// group queue on first use, so a message published before any subscriber
// exists waits in the default group's queue; [Broker.Declare] creates other
// groups' queues ahead of their first subscription.
//
// # Publishing
//
// Publishes are spread over Config.PublisherChannels channels in confirm
// mode. A call writes all its messages, then awaits their confirms together,
// and concurrent calls share channels, so confirms are pipelined instead of
// costing a round trip each. Publish returns after every message is
// confirmed; a message whose channel dies before its confirm (a lost
// connection) is sent again once reconnected, within Config.PublishTimeout,
// so a publish either succeeds (possibly delivering a duplicate) or returns
// an error, never loses a message silently. [Broker.PublishContext] (a
// [broker.ContextPublisher]) waits for a connection, a channel and the
// confirms at most until its context ends; Close returns even when the
// server stopped answering.
//
// # Size limits
//
// RabbitMQ closes the connection, and every consumer on it, when a
// message's headers do not fit in one frame of the negotiated frame_max
// (131072 bytes by default), and closes the channel on a body over its
// max_message_size. Publish checks both before sending (the header frame
// computed byte for byte, Config.MaxMessageSize standing for the server's
// max_message_size) and refuses such a message with an error wrapping
// [broker.ErrMessageTooLarge]; nothing of that call is sent. Metadata keys,
// the UUID and the content type must be at most 255 bytes (AMQP short
// strings). [Broker.MaxMessageSize] makes the broker a [broker.SizeLimiter].
//
// # Delayed retries
//
// [Broker.PublishDelayed] uses RabbitMQ's own dead-lettering, no plugin: per
// delay tier (powers of two from 125ms, see [DelayTier]) and target, a queue
// with x-message-ttl set to the tier dead-letters to the target group's
// queue (through the default exchange) or to the topic's exchange (every
// group). A waiting retry holds no goroutine and survives worker restarts.
//
// # Clusters and quorum queues
//
// Config.URLs (or a comma-separated Config.URL) names the nodes of a
// cluster: the broker connects to the first that answers and, when its
// connection is lost, to the next one, publishing again what was not
// confirmed and consuming again. Config.QueueType = QueueQuorum makes every
// queue the broker declares a quorum queue: group queues, dead-letter
// topics' queues and delay queues, which then forward expired retries with
// at-least-once dead-lettering (x-dead-letter-strategy at-least-once,
// x-overflow reject-publish); classic queues dead-letter at most once. A
// queue found with the other type fails its declaration with an error
// wrapping [ErrQueueType]. Quorum group queues have an x-delivery-limit
// (Config.DeliveryLimit) that dead-letters to the topic's dead-letter
// topic, and RabbitMQ's x-delivery-count becomes hub-delivery-count.
// scripts/rabbitmq-cluster.sh runs a three-node test cluster.
//
// # Consuming
//
// Deliveries are handed out concurrently up to the prefetch (basic.qos);
// Ack and Nack become basic.ack and basic.nack with requeue. Redelivered
// messages carry the hub-delivery-count metadata. After a lost connection
// the broker reconnects with backoff and subscriptions consume again. A
// subscription that cannot start (access refused, RabbitMQ unreachable for
// Config.PublishTimeout) fails SubscribeGroup with the server's error; a
// group queue deleted behind the broker's back is declared again.
//
// # Messages on the wire
//
// The message UUID is the AMQP message-id, metadata are string headers, the
// payload is the body, and messages are persistent unless Config.Transient.
package amqp
