// Package sqs is the Amazon SQS adapter of the hub: a [broker.Broker] with
// consumer groups, delayed delivery ([broker.Delayer]) and queue declaration
// ([broker.Declarer]), over the AWS SDK v2 that watermill-aws uses.
//
// # Topics and consumer groups
//
// Each hub topic is an SNS topic and each consumer group an SQS queue
// subscribed to it with raw message delivery: the default group reads the
// queue named after the topic, group g of topic t reads "<t>-<g>-<hash>"
// (all names start with Config.QueuePrefix). Publish goes to the SNS topic,
// so every group receives every message, whichever process declared the
// group. The first Publish, Subscribe or Declare of a topic creates its SNS
// topic and default queue, so messages published before any subscriber are
// kept. Topic and group names may hold letters, digits, '_', '-' and '.'
// ('.' is mapped to '_'); anything else is rejected with [ErrInvalidName].
// FIFO queues are not supported.
//
// # Receiving
//
// A subscription receives in batches of up to Config.MaxMessages with long
// polling (Config.WaitTime) and delivers concurrently: up to
// broker.Group.Prefetch messages may be out and unacked at once. An ack
// deletes the message (DeleteMessageBatch, acks collected over
// Config.AckWindow); a nack makes it visible again at once
// (ChangeMessageVisibility 0, or Config.NackDelay), and its next delivery carries
// hub-delivery-count from SQS's ApproximateReceiveCount. A message not acked
// within Config.VisibilityTimeout is delivered again by SQS.
//
// # Message layout
//
// The payload is the SQS body (base64 when it is empty or not valid SQS
// text); the UUID and all metadata travel as JSON in one message attribute,
// [EnvelopeAttribute], so any number of metadata keys fits within SQS's
// 10-attribute limit. A message larger than [MaxMessageSize] with its
// metadata, counted as SNS and SQS count it (body plus attribute name, type
// and value), is refused before anything is sent with [ErrTooLarge], which
// wraps [broker.ErrMessageTooLarge]. Messages sent by Watermill's own SQS
// publisher are read too.
//
// # Timeouts
//
// Every SQS and SNS call is bounded by Config.RequestTimeout (a receive by
// Config.WaitTime more), the SDK's retries included, so a stalled endpoint
// costs a publish or a receive that long and Close returns.
// [Broker.PublishContext] (a [broker.ContextPublisher]) also ends with its
// context.
//
// # Delays
//
// PublishDelayed uses DelaySeconds (SendMessageBatch) on the queue of the
// named group, or on every group's queue. SQS delays at most 15 minutes; a
// longer delay is sent in hops: the message carries its due time and a
// subscriber that receives it early sends it on with the remaining delay
// instead of delivering it.
package sqs
