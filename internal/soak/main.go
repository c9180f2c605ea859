// Command soak is the hub's chaos soak: it pushes N messages through
// RabbitMQ to several worker processes sharing a Redis idempotency store,
// SIGKILLs a worker and restarts the RabbitMQ node mid-run, mixes in
// transient failures, poison messages and duplicate keys, then prints what
// happened to every key.
//
//	go run ./internal/soak -n 100000
//
// It starts a private RabbitMQ node of its own on free ports
// (scripts/rabbitmq-tls-node.sh, state in a temporary directory) and never
// touches the machine's shared node; Redis keys live under a unique prefix
// deleted at the end. Workers are this binary re-executed with
// SOAK_WORKER=1. The exit status is 1 when a key was lost, handled twice or
// dead-lettered wrongly.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	n              int
	workers        int
	poisonEvery    int
	dupEvery       int
	transientEvery int
	killAt         float64
	restartAt      float64
	redis          string
	script         string
	stall          time.Duration
	publishers     int
	url            string
}

func main() {
	if os.Getenv("SOAK_WORKER") == "1" {
		os.Exit(worker())
	}
	var o options
	flag.IntVar(&o.n, "n", 100000, "messages (distinct keys) to publish")
	flag.IntVar(&o.workers, "workers", 3, "worker processes")
	flag.IntVar(&o.poisonEvery, "poison-every", 1000, "every k-th key is poison (a permanent error): it must be dead-lettered")
	flag.IntVar(&o.dupEvery, "dup-every", 100, "every k-th key is published twice: the second copy must be acked as a duplicate")
	flag.IntVar(&o.transientEvery, "transient-every", 10, "every k-th key fails its first attempt")
	flag.Float64Var(&o.killAt, "kill-at", 0.3, "SIGKILL a worker (and start a new one) once this fraction is handled; 0: never")
	flag.Float64Var(&o.restartAt, "restart-at", 0.6, "restart the RabbitMQ node once this fraction is handled; 0: never")
	flag.StringVar(&o.redis, "redis", envOr("HUB_TEST_REDIS_ADDR", "127.0.0.1:6379"), "Redis address (idempotency store)")
	flag.StringVar(&o.script, "node-script", "scripts/rabbitmq-tls-node.sh", "script that starts, restarts and stops the private RabbitMQ node")
	flag.DurationVar(&o.stall, "stall", 3*time.Minute, "give up when no key makes progress for this long")
	flag.IntVar(&o.publishers, "publishers", 8, "concurrent publishers")
	flag.StringVar(&o.url, "amqp-url", "", "use this RabbitMQ instead of a private node (then -restart-at must be 0: a shared node is never restarted)")
	flag.Parse()
	r, err := run(o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !r.ok() {
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
