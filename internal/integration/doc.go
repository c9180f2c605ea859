// Package integration is a module of tests that run the core's packages on
// the real adapters (brokertest and dlq on every broker, traces across
// hubs on RabbitMQ): they cannot live in the core module, whose go.sum must
// not name any adapter's dependencies.
package integration
