// Package hub is the plumbing of message-driven harvest workers, on
// Watermill: typed handlers, idempotent consumption, retries with backoff,
// dead letters with replay, payload encryption and OpenTelemetry, over a
// broker you choose (in-memory, RabbitMQ, Amazon SQS).
//
// # Getting started
//
//	b, _ := memory.New(memory.Config{})           // or amqp.New, sqs.New
//	h, _ := hub.New(b, hub.Config{})              // the zero Config works
//	hub.Handle(h, "records", func(ctx context.Context, m hub.Message[Record]) error {
//		return index(ctx, m.Payload)
//	}, hub.Concurrency(8))
//	go h.Run(ctx)                                 // blocks until ctx ends, then drains
//	hub.Publish(ctx, h, "records", rec, hub.WithKey(rec.ID))
//
// Handlers are tested with package hubtest, which runs a real Hub on the
// in-memory broker: see the examples.
//
// # What the hub does with each delivery
//
// The hub runs these steps in this order for every message, whatever
// middleware the application adds; application middleware
// ([Config.Middleware], [WithMiddleware]) wraps step 4 only, each attempt.
// So retries always run before dead-lettering: the ordering trap of
// Watermill's Retry and PoisonQueue middleware (added in the wrong order,
// poison catches the error before any retry) cannot happen here.
//
//  1. Skip a message addressed to another handler's group (hub-target-group).
//  2. Claim the idempotency key, scoped by handler name, with a lease
//     ([Config.Lease]). Completed already: ack as a duplicate, the handler
//     is not called. Claimed by a live lease elsewhere: publish it again
//     with a delay until the lease ends, and ack. The store unreachable:
//     nack.
//  3. Decrypt, check the schema name and version, upcast, and decode. Any
//     failure is permanent: dead-letter at once with reason decode-error,
//     so a poison message never blocks its queue.
//  4. Call the handler, containing panics (a panic is a permanent error),
//     with in-process retries by the handler's [retry.Policy]: backoff with
//     jitter, or the delay a handler asks with [retry.After]. Shutdown cuts
//     a wait short and nacks. The lease is extended while retries run.
//  5. Success: publish a Pipe's outputs, Complete the key, ack. A crash
//     between Complete and ack redelivers a message that step 2 acks as a
//     duplicate.
//  6. Failure after the in-process attempts: release the key; while delayed
//     retries remain, publish the message again to this handler's group only
//     with hub-attempt+1 and a delay ([broker.Delayer]), then ack.
//  7. Otherwise dead-letter: publish to "<topic>.dlq" with the original
//     payload and metadata plus hub-dlq-reason, hub-dlq-error,
//     hub-original-topic, hub-handler, hub-attempts, hub-failed-at and
//     hub-first-failed-at, release the key, ack. If that publish fails, nack:
//     nothing is lost.
//
// Brokers deliver at least once and the hub handles effectively once per
// key and handler. Ordering is not promised. Shutdown never acks an
// unfinished message.
//
// # Lifecycle
//
// [Hub.Run] blocks; when its context ends it drains within
// [Config.ShutdownTimeout]. [Hub.Shutdown] drains with a deadline,
// [Hub.Close] stops at once; both are safe to call twice, and afterwards
// [Publish] returns [ErrClosed]. [Hub.Health] reports broker and store
// reachability and stuck handlers.
//
// # Schemas
//
// Every message carries hub-schema and hub-schema-version, from the payload
// type's name (or its [Schemer] method, or [RegisterSchema]). A consumer
// reads older versions through [Upcaster]s and dead-letters newer or unknown
// ones.
//
// # Metadata
//
// Every metadata key the hub reads or writes is a constant in metadata.go,
// such as [KeyKey], [KeyAttempt] and [KeyDLQReason].
package hub
