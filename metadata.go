package hub

// Metadata keys the hub reads and writes on every message. They are the wire
// contract between services: adapters, hubctl and other languages rely on
// them, so they never change meaning. Every key the hub uses is here.
const (
	// KeyKey is the idempotency key. It defaults to the message ID.
	KeyKey = "hub-key"
	// KeyAttempt is the 1-based number of the handler attempt the message is
	// for. Delayed retries publish the message again with it incremented.
	KeyAttempt = "hub-attempt"
	// KeyRedeliveries counts the delayed (broker-side) retries so far.
	KeyRedeliveries = "hub-redeliveries"
	// KeyDeliveryCount is set by broker adapters on a message the broker
	// delivers again after a nack or a lost consumer (2 on the first
	// redelivery). The hub adds it to the attempt count.
	KeyDeliveryCount = "hub-delivery-count"
	// KeySchema is the schema name of the payload.
	KeySchema = "hub-schema"
	// KeySchemaVersion is the schema version of the payload, a decimal integer.
	KeySchemaVersion = "hub-schema-version"
	// KeyContentType is the codec's content type, such as application/json.
	KeyContentType = "hub-content-type"
	// KeyPublishedAt is the RFC 3339 (nanoseconds, UTC) publish time.
	KeyPublishedAt = "hub-published-at"
	// KeyCorrelationID ties together every message caused by one request.
	KeyCorrelationID = "correlation_id"
	// KeyTraceParent and KeyTraceState carry W3C trace context.
	KeyTraceParent = "traceparent"
	KeyTraceState  = "tracestate"
	// KeyEncKeyID names the keyring key that encrypted the payload. Its
	// presence means the payload is ciphertext.
	KeyEncKeyID = "hub-enc-key-id"
	// KeyTargetGroup, when set, restricts a message to one consumer group
	// (handler). Brokers that cannot address a group directly carry delayed
	// retries and replays this way; other handlers of the topic ack and skip it.
	KeyTargetGroup = "hub-target-group"
	// KeyNotBefore, an RFC 3339 time, marks a delayed retry scheduled
	// further ahead than the broker delays in one hop: a copy that arrives
	// before it is scheduled again without calling the handler.
	KeyNotBefore = "hub-not-before"

	// Dead-letter keys, added to the original metadata when a message is
	// dead-lettered.
	KeyDLQReason     = "hub-dlq-reason"
	KeyDLQError      = "hub-dlq-error"
	KeyOriginalTopic = "hub-original-topic"
	KeyHandler       = "hub-handler"
	KeyAttempts      = "hub-attempts"
	KeyFailedAt      = "hub-failed-at"
	KeyFirstFailedAt = "hub-first-failed-at"
	// KeyDLQPayloadOmitted is set on a letter whose payload had to be left
	// out to fit the broker's size limit: the original size and digest.
	KeyDLQPayloadOmitted = "hub-dlq-payload-omitted"
)

// Dead-letter reasons, the values of [KeyDLQReason].
const (
	ReasonExhausted = "retries-exhausted" // every in-process and delayed attempt failed
	ReasonPermanent = "permanent-error"   // the handler returned retry.Permanent or panicked
	ReasonDecode    = "decode-error"      // the payload could not be decrypted, upcast or decoded
	ReasonPanic     = "panic"             // the handler panicked
	// ReasonTooLarge: the message (or a Pipe output) is over the broker's
	// size limit, so it can neither be retried through the broker nor
	// published.
	ReasonTooLarge = "too-large"
	// ReasonScheduleFailed: the broker refused the delayed retry on
	// several deliveries in a row.
	ReasonScheduleFailed = "schedule-failed"
)
