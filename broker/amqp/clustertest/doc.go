// Package clustertest holds the RabbitMQ cluster tests of the amqp adapter:
// the whole hub, 10,000 messages with delayed retries in flight on quorum
// queues, while a node of a three-node cluster is killed (SIGKILL of its
// Erlang VM) and restarted. They need the cluster of
// scripts/rabbitmq-cluster.sh and are built with the tag "cluster" only:
//
//	scripts/rabbitmq-cluster.sh start
//	go test -race -tags cluster ./broker/amqp/clustertest/
//
// The tests start the cluster themselves when it is not up (about a
// minute), and skip (fail, with HUB_REQUIRE_INTEGRATION=1) when RabbitMQ is
// not installed. .ci/run starts the cluster and runs them after the README's
// test command.
package clustertest
