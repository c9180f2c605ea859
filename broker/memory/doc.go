// Package memory is an in-process message broker with consumer groups,
// bounded queues, acknowledgements, redelivery and delayed delivery.
//
// It is the hub's embedded default broker and the broker under hubtest. A
// [*Broker] implements [broker.Broker], [broker.Delayer] and
// [broker.Declarer], and is a Watermill message.Publisher and
// message.Subscriber, so plain Watermill code can use it too.
//
// # Topics and consumer groups
//
// Every topic has consumer groups, and every group is one bounded FIFO queue.
// [Broker.Publish] puts one copy of each message (message.Message.Copy) in
// the queue of every group of the topic. The subscriptions of one group
// compete: each message of the group goes to one of them.
// [Broker.Subscribe] joins the topic's default group, named after the
// topic; [Broker.SubscribeGroup] joins a named group; [Broker.Declare]
// creates groups before anyone subscribes.
//
// Nothing is dropped silently. A message published to a topic that has no
// group yet waits in the topic's implicit backlog, and the first group
// declared or subscribed takes that backlog over.
//
// # Delivery
//
// A subscription with Prefetch n holds up to n delivered messages that are
// not yet acked. An acked message is gone. A nacked message goes back to the
// head of its group's queue as a fresh copy whose metadata
// "hub-delivery-count" is 2 on the first redelivery, 3 on the next, and so
// on. Cancelling a subscription's context stops new deliveries; messages
// already delivered stay with the handler until it acks or nacks them, and
// the channel is closed once none is left. [Broker.Close] stops everything,
// puts unacked messages back in their queues and closes every channel.
//
// A delivered message's context is a child of the subscription's context,
// cancelled once the message is acked or nacked or the broker is closed.
//
// # Bounds
//
// Each group's queue holds at most [Config.QueueSize] published messages.
// When it is full, Publish waits for room ([Block], the default) or fails
// with [ErrQueueFull] ([Reject]); [Broker.PublishContext] waits at most until
// its context ends. A topic's implicit backlog (a topic nobody declared a
// group for, such as a dead-letter topic or a Pipe output nobody consumes
// yet) is unbounded unless [Config.BacklogSize] is set, so publishing to such
// a topic never blocks: the hub's dead letters and outputs cannot wedge a
// queue behind them.
//
// [Config.MaxMessageSize] (0: none) refuses larger messages with an error
// wrapping [broker.ErrMessageTooLarge], as SQS and RabbitMQ refuse theirs,
// so that tests can drive the hub into a broker size limit. Messages that come back
// to a queue (a nack, a cancelled subscription, a delayed message falling
// due) always get in, so a queue can briefly hold more than QueueSize;
// delayed messages are bounded on their own by [Config.MaxDelayed].
//
// With one subscription of Prefetch 1, a group's messages are delivered in
// publish order, a nacked message first again. Several subscriptions, a
// larger Prefetch or delayed messages give no order.
//
// # Testing
//
// [Broker.Stats] reports queued, unacked and delayed messages, and
// [Broker.WaitIdle] waits, without polling, until nothing is queued, in
// flight or delayed. [Broker.RedeliverAfterAck] injects the redelivery a
// real broker makes after a lost ack.
package memory
