// Package outbox is a transactional outbox on PostgreSQL for the hub: a
// service changes its database and stages the messages that announce the
// change in one transaction ([Publish]), and a relay ([Outbox.Run])
// publishes what committed. A crash between the two can neither lose a
// message nor publish a change that never committed.
//
// It is its own Go module (github.com/harvesthub/hub/outbox), so pgx stays
// out of the core module's dependencies.
//
//	ob, err := outbox.New(pool, h, outbox.Config{})  // h: the *hub.Hub that encodes and publishes
//	err = ob.Migrate(ctx)                             // once at startup; idempotent
//	go ob.Run(ctx)                                    // the relay, in as many processes as you like
//
//	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		// ... the service's own writes ...
//		return outbox.Publish(ctx, ob, tx, "records.index", job, outbox.OrderedBy(job.DocID))
//	})
//
// # Guarantees
//
//   - A row is published only if its transaction committed, and at least
//     once. Its message ID is fixed when it is staged (hub.WithID or a new
//     UUID), so a relay that dies after publishing a batch and before
//     marking it sent makes the next relay publish the same IDs again, and
//     consumers deduplicate them (a hub handler's idempotency key defaults
//     to the message ID). Without a crash, each row is published once,
//     however many relays run.
//   - Order per key: rows staged with [OrderedBy](key) are published in the
//     order their transactions committed, across topics and relays. Staging
//     takes a transaction-scoped advisory lock on the key, so the
//     transactions that write one key commit one after another and their
//     rows' sequence numbers follow commit order; a relay publishes a row
//     of a key only when every earlier row of that key is marked sent.
//     Rows without a key are published in no particular order relative to
//     others (in practice, sequence order within a relay). The broker and
//     the consumers must keep order too for it to reach the handler.
//   - Many relays: each batch is one transaction that takes its rows with
//     FOR UPDATE SKIP LOCKED, publishes them in sequence order (one broker
//     call per run of one topic), marks them sent and commits.
//
// # Table
//
// One table (Config.Table, by default hub_outbox): seq (bigserial, the
// order), id (the message ID), topic, okey (the ordering key, empty for none), payload
// (bytea, already encoded and, with hub encryption, encrypted), metadata
// (jsonb), delay_us, created_at, sent_at (NULL while pending); partial
// indexes on pending rows. [Outbox.Migrate] creates it under an advisory
// lock, idempotently. Sent rows are deleted by the relay every
// Config.CleanupInterval once older than Config.Retention (0: at once).
//
// # Waking up
//
// Every Publish sends pg_notify on the channel hub_outbox_<table> (delivered
// at commit); each relay LISTENs on a connection of its own and polls every
// Config.PollInterval as well, so a lost notification or a lost listening
// connection only delays rows.
//
// # Observability
//
// OpenTelemetry metrics: hub.outbox.pending and hub.outbox.oldest_age
// (gauges, read from the table when collected), hub.outbox.relay.lag
// (histogram: seconds from a row's insert to its publish, database clock),
// messaging.client.sent.messages (counter, with messaging.system,
// messaging.destination.name, error.type); all with hub.outbox.table.
// [Outbox.Health] fails when the table is unreachable, when the oldest
// pending row is older than Config.MaxAge ([ErrStale]) or when this
// relay's last batch failed.
//
// # With the inbox
//
// In a hub handler backed by idempotency/pgstore, pgstore's
// CompleteClaimTx completes the delivery's idempotency key in the same
// transaction: state, done-mark and outputs commit together, which is
// exactly-once processing (see the example).
package outbox
