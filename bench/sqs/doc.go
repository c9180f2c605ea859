// Package sqs benchmarks the hub's SQS adapter (broker/sqs) against
// watermill-aws's own SQS publisher and subscriber with their defaults, on
// the same SQS endpoint in one run. Start the emulator first
// (scripts/fauxqs.sh start), then:
//
//	go test -run '^$' -bench . -benchtime 2000x ./bench/sqs/
//
// Each benchmark publishes b.N messages of 1 KiB while one subscription
// consumes and acks them, and reports end-to-end msg/s.
package sqs
