// Package nats is the hub's NATS JetStream adapter (github.com/nats-io/nats.go,
// its jetstream API), a module of its own so that only users of NATS
// depend on the NATS client.
//
//	b, err := nats.New(ctx, nats.Config{URL: "nats://127.0.0.1:4222"})
//	h, err := hub.New(b, hub.Config{})
//
// # Topology
//
// Each hub topic is one stream with interest retention: a message is kept
// until every consumer group of the topic has acked it. Each consumer
// group (hub handler) is one durable pull consumer of that stream, shared
// by all its subscriptions, which compete for its messages. A group
// receives what is published after its consumer was created; publishing
// creates the stream and the default group's consumer (named after the
// topic), and the hub declares each handler's consumer when the handler is
// registered, so nothing published before the first subscriber is lost.
//
// Names: the stream of topic T is Config.StreamPrefix (default "hub_")
// followed by T with '.' turned into '_' (demo.records -> hub_demo_records);
// a topic with other characters than [A-Za-z0-9.-], or a very long one,
// keeps the characters that fit and gets "_" and 16 hex digits of its
// SHA-256 appended. Consumers are named from the group the same way. The
// stream's subjects are "<SubjectPrefix>.<stream>" (a publish to every
// group) and "<SubjectPrefix>.<stream>.g.<consumer>" (a delayed retry to
// one group: the other groups ack and skip it). The hub's own names are
// kept in the stream and consumer descriptions, where the Inspector reads
// them.
//
// # Delivery
//
// Ack acks the message (AckExplicit); Nack makes JetStream deliver it
// again (after Config.NackDelay, with NakWithDelay). While a delivered
// message is neither, the subscription sends "in progress" every
// Config.AckWait/3, so AckWait (default 30s, the hub's lease) bounds how
// long a crashed process holds a message, not how long a handler may run.
// Closing the Broker nacks what it delivered and did not see acked. A
// message JetStream delivers again carries hub-delivery-count.
// Config.MaxDeliver is unbounded by default: the hub counts attempts and
// dead-letters on its own, and a message past MaxDeliver would stay in the
// stream undelivered.
//
// Delayed retries (broker.Delayer): NATS servers before 2.12 cannot
// schedule a message, so PublishDelayed stores it at once with a
// Hub-Nats-Not-Before header; a subscription that receives it early nacks
// it with the remaining delay (NakWithDelay) without delivering it. That
// early delivery is not counted in hub-delivery-count.
//
// # Publishing
//
// Publish and PublishContext return once JetStream has stored every
// message. Each message carries a Nats-Msg-Id made of its UUID and a
// digest of its metadata and payload: the same message published twice
// within Config.DuplicateWindow (a retry after a lost ack) is stored once,
// while a delayed retry or a replay (other metadata) is stored again.
// Messages are checked against the server's max_payload before any is
// sent (broker.ErrMessageTooLarge).
//
// # Metadata
//
// Metadata travels as NATS headers. A key or value a header line cannot
// carry unchanged for every client (non-ASCII, control characters,
// leading or trailing blanks, the characters nats.go refuses in keys, or
// a key starting with "Nats-" or "Hub-Nats-") travels base64url-encoded
// in the Hub-Nats-Meta header instead, so every key and value round-trips
// exactly. The message UUID is the Hub-Nats-Uuid header; a message
// published without one is delivered without one (the hub keys it by its
// content), and is never deduplicated against another.
//
// # Security
//
// Config.TLS (broker.TLSFiles) gives mutual TLS with certificate files
// reloaded on rotation; use a tls:// URL.
package nats
