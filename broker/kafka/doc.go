// Package kafka is a hub broker on Apache Kafka, through franz-go
// (github.com/twmb/franz-go). It is its own module,
// github.com/harvesthub/hub/broker/kafka, so that users of the other
// brokers never download a Kafka client.
//
// Tested against kfake only: no Kafka server runs where this package is
// developed, so every test (Watermill's universal suite, the hub's
// hubtest/brokertest suite, the fault tests) runs against kfake, franz-go's
// in-process cluster that speaks the Kafka wire protocol (produce, fetch,
// consumer groups, offset commits, admin requests, TLS). kfake is not
// Kafka: replication, broker failover, quotas and the real group
// coordinator's timing are not exercised. The adapter is written for a
// real cluster (idempotent producer, acks=all, cooperative group
// rebalancing) and should be tried against one before production.
//
// # Topics, groups and keys
//
// A hub topic is a Kafka topic, created on first use (Config.Partitions,
// Config.ReplicationFactor; zero means the cluster's defaults). A hub
// consumer group is the Kafka consumer group "<topic>~<group>" ('~' never
// appears in a topic name); the subscriptions of a group share its
// partitions. A group that has never committed starts at the earliest
// retained offset, so it receives what was published before it first
// joined (within the topic's retention). The record key is the message's
// hub-key: one key stays in one partition, in order. Metadata travel as
// record headers; the message UUID in the header watermill-kafka uses,
// [HeaderUUID]. The dead-letter topic is the hub's "<topic>.dlq", an
// ordinary topic.
//
// # Acks and commits
//
// Offsets are committed (every Config.CommitInterval, when partitions
// move, and when a subscription ends) only for acked messages, and only
// up to the first message of the partition not yet acked: an ack out of
// order is committed once everything before it is. At least once: a
// message delivered and not acked when its subscriber dies, or whose
// partition moved, is delivered again to the group. A nacked message is
// delivered again by the same subscription before any later message of its
// partition, with hub-delivery-count set (after a crash the count starts
// over: Kafka does not count deliveries). Up to Group.Prefetch messages are
// delivered unacked at once; with a prefetch of 1 a partition is handled in
// order.
//
// # Delayed retries
//
// [Broker.PublishDelayed] writes to a retry topic "<topic>.retry.<tier>"
// (tiers 1s, 5s, 30s, 2m, 10m, 1h, 6h, 24h; the smallest not shorter than
// the delay), with the due time in a header and the target group in
// hub-target-group. Every subscription of topic also consumes its retry
// topics in its own group: it skips records meant for another group,
// pauses a retry partition whose next record is not due and delivers it
// when it is. Nothing waits in memory beyond one poll per partition, a
// pending retry survives every process restarting, and no commit passes a
// retry not yet delivered and acked. A message is never delivered before
// its delay; one queued behind a longer delay of the same tier may wait up
// to the gap to the previous tier longer.
//
// # Dead letters
//
// dlq.List, Replay and Purge work as on every broker, with one Kafka
// limit: offsets are committed, not single messages, so a letter removed
// (purged, or replayed) behind a letter kept in the same partition is read
// again by the next scan.
//
// # Limits
//
// [Broker.MaxMessageSize] is Config.MaxMessageBytes (set it to the
// cluster's message.max.bytes) less room for the record framing; a larger
// message fails with broker.ErrMessageTooLarge before anything is sent.
// [Broker.Queues] reports each group's lag on the topic as its depth;
// in-flight counts are unknown to Kafka (-1), and the age of the oldest
// message is not reported.
package kafka
