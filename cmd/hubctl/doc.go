// Command hubctl is the operator CLI of Harvest Hub: it lists, shows,
// replays and purges dead letters, and reports queue depths, on RabbitMQ,
// Amazon SQS (or an emulator) and, for tests, the in-process memory broker.
//
//	go install github.com/harvesthub/hub/cmd/hubctl@latest
//
// # Commands
//
//	hubctl dlq list    <topic> [filters] [--json]
//	hubctl dlq show    <topic> <id> [--key-file f | --key-dir d] [--json]
//	hubctl dlq replay  <topic> [filters] [--to topic] [--dry-run]
//	hubctl dlq purge   <topic> [filters] [--yes]
//	hubctl topics stats [topic] [--group g] [--json]
//	hubctl serve [--listen addr] [--topic t[:group,...]]... [--metrics url]...
//	hubctl help
//
// <topic> is the original topic ("records"); its dead-letter topic is
// <topic> plus --dlq-suffix (".dlq" by default, as hub.Config's
// DeadLetterSuffix). Filters: --handler, --error (a substring of the error
// text), --reason, --since and --until (RFC 3339, or a duration such as 2h
// or 7d meaning that long ago; --until is exclusive) and --limit.
//
// hubctl first asks the broker whether the dead-letter queue exists
// (broker.Inspector: a passive queue.declare on RabbitMQ, GetQueueUrl on
// SQS), so a mistyped topic is reported as not found and never creates a
// queue. Listing and showing hold the letters they read unacked and hand
// them all back at the end; replay acks a letter only after its republish
// is confirmed, so an interrupted replay loses nothing, and running it
// again republishes at most the letters whose ack was lost, which the
// handlers' idempotency keys turn into duplicates acked unhandled.
//
// Purge asks to type the topic name to confirm unless --yes is given,
// deletes exactly the letters it counted, and refuses to run without a
// terminal and without --yes. Replay draws a progress bar when stdout is a
// terminal and prints counts otherwise.
//
// topics stats reports each queue's depth, in-flight and consumer counts
// where the broker reports them ("?" otherwise, -1 in --json). RabbitMQ
// cannot list a topic's groups over AMQP: name them with --group.
//
// # Console
//
// hubctl serve runs a web console (see serve.go and README.md): queue
// depths with sparklines and no-consumer warnings, dead letters to filter,
// read, replay and purge (after a confirmation that states the count, as a
// job with progress), and, with --metrics, outcome rates and p50/p99
// processing times per handler read from the workers' Prometheus
// endpoints. It binds 127.0.0.1:8080 by default and refuses any other
// address without an operator token (--token, HUBCTL_TOKEN, --token-file)
// or client certificates (--console-tls-ca, -cert, -key); every state
// change needs the session's CSRF token and a same-origin request;
// --read-only turns replay and purge off. Replays, purges and decryptions
// are logged as JSON on stderr with who did them and how many letters.
// RabbitMQ cannot list queues over AMQP: name the topics with --topic
// records:normalise,audit.
//
// # Brokers
//
// --broker, or HUBCTL_BROKER, is a URL:
//
//	amqp://user:pass@host:5672/vhost     RabbitMQ
//	amqps://user:pass@host:5671/vhost    RabbitMQ over TLS; --tls-ca,
//	                                     --tls-cert, --tls-key and
//	                                     --tls-server-name give the files
//	sqs://us-east-1                      Amazon SQS in a region, default
//	                                     AWS credential chain
//	sqs://KEY:SECRET@us-east-1?endpoint=http://127.0.0.1:4566
//	                                     an SQS emulator (fauxqs, LocalStack)
//	                                     with static credentials
//	nats://host:4222?prefix=hub_         NATS JetStream; prefix is the
//	                                     services' stream prefix
//	tls://host:4222                      NATS over TLS (--tls-* flags)
//	memory://name                        an in-process broker a test
//	                                     registered (tests only)
//
// SQS URL parameters: endpoint (an http(s) base URL), prefix (the
// QueuePrefix the services use), visibility (how long a listed letter
// stays hidden from other consumers while hubctl holds it; default 2m).
//
// # Configuration
//
// Every connection flag can be set by an environment variable named
// HUBCTL_ and the flag's name in upper case with '-' as '_' (HUBCTL_BROKER,
// HUBCTL_TLS_CA, HUBCTL_DLQ_SUFFIX, HUBCTL_KEY_DIR, ...); a flag given on
// the command line overrides it. Encrypted payloads (those with
// hub-enc-key-id) are decrypted by show with --key-dir (a directory as
// middleware.KeyringFromFiles reads it), --key-file (one key file named by
// its key ID, 32 raw bytes or base64; repeatable), or, when neither is
// given, the keyring in the environment variables <--key-env>_KEY_<ID> and
// <--key-env>_CURRENT (default prefix HUB_ENC, as
// middleware.KeyringFromEnv reads it).
//
// # Exit codes
//
//	0  success
//	1  the operation failed (a broker error, a replay that failed part way,
//	   a purge not confirmed, a payload that could not be decrypted)
//	2  usage error (unknown command or flag, bad filter, missing argument,
//	   purge without a terminal and without --yes)
//	3  not found (unknown topic or dead-letter queue, a letter that no
//	   longer exists)
//	4  the broker is unreachable
//
// Errors are one line on stderr, starting with "hubctl: ".
package main
