// Package e2e holds the examples' end-to-end test across processes: the
// ingest, dispatch and index binaries, built by the test, run as separate
// processes on RabbitMQ, as they would in Kubernetes. The in-process
// end-to-end test (memory broker) lives with the harvest command.
package e2e
