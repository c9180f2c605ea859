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
//     A message carrying hub-not-before in the future (a delayed retry
//     longer than the broker delays in one hop) is scheduled again for the
//     rest of its delay, and acked.
//  2. Claim the idempotency key (hub-key, else the message ID, else a
//     SHA-256 of the message: never empty), scoped by handler name
//     ([StoreKey]), with a lease ([Config.Lease]). Completed already: ack
//     as a duplicate, the handler is not called. Claimed by a live lease
//     elsewhere: publish it again with a delay until the lease ends, and
//     ack. The store unreachable: pause, nack.
//  3. Decrypt, check the schema name and version, upcast, and decode. Any
//     failure, a panic in a codec, upcaster or Encrypter included, is
//     permanent: dead-letter at once with reason decode-error, so a poison
//     message never blocks its queue.
//  4. Call the handler, containing panics (a panic is a permanent error),
//     with in-process retries by the handler's [retry.Policy]: backoff with
//     jitter, or the delay a handler asks with [retry.After]. Shutdown cuts
//     a wait short and nacks. The lease is extended while retries run.
//  5. Success: publish a Pipe's outputs (IDs and keys derived from the
//     input's key, so a retry republishes duplicates, not new messages),
//     Complete the key, ack. A crash between Complete and ack redelivers a
//     message that step 2 acks as a duplicate.
//  6. Failure after the in-process attempts: release the key; while delayed
//     retries remain, publish the message again to this handler's group only
//     with hub-attempt+1 and a delay ([broker.Delayer]), then ack. A publish
//     that fails pauses before the nack; one refused on 5 deliveries in a
//     row is dead-lettered (schedule-failed).
//  7. Otherwise dead-letter: publish to "<topic>.dlq" with the original
//     payload and metadata plus hub-dlq-reason, hub-dlq-error,
//     hub-original-topic, hub-handler, hub-attempts, hub-failed-at and
//     hub-first-failed-at, release the key, ack. If that publish fails,
//     pause and nack: nothing is lost. A letter the broker refuses for its
//     size is trimmed until it fits.
//
// Everything the hub does on its own behalf after a handler returned
// (Complete, Release, its publishes) runs on a context of its own, bounded
// by [Config.OpTimeout], so it completes even after Close.
//
// Brokers deliver at least once and the hub handles effectively once per
// key and handler. Ordering is not promised. Shutdown never acks an
// unfinished message. docs/RELIABILITY.md states the contract and the
// fault matrix that proves it.
//
// # Lifecycle
//
// [Hub.Run] subscribes every handler (returning the error if one cannot
// subscribe) and blocks; when its context ends it drains within
// [Config.ShutdownTimeout]. [Hub.Shutdown] drains with a deadline,
// [Hub.Close] stops at once; both always return, are safe to call twice
// and concurrently with Run, and afterwards [Publish] returns [ErrClosed]. [Hub.Health] reports broker and store
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
