// Package fleet holds the multi-process tests: hub workers run as separate
// processes (the test binary re-executed in worker mode) on a real RabbitMQ
// with a shared Redis or PostgreSQL idempotency store, and are killed with
// SIGKILL mid-handler to prove what survives a crash.
package fleet
