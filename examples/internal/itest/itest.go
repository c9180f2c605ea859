// Package itest finds the real servers the examples' integration tests run
// against. It copies the few lines of github.com/harvesthub/hub's
// internal/testenv, which the examples module cannot import: addresses come
// from HUB_TEST_* variables with this machine's defaults, and Require skips
// a test when its server is unreachable, or fails it when
// HUB_REQUIRE_INTEGRATION=1 (CI sets it), so CI never passes on skips.
package itest

import (
	"cmp"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// AMQPURL is the RabbitMQ URL (HUB_TEST_AMQP_URL).
func AMQPURL() string {
	return cmp.Or(os.Getenv("HUB_TEST_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")
}

// NATSURL is the NATS server's URL (HUB_TEST_NATS_URL).
func NATSURL() string { return cmp.Or(os.Getenv("HUB_TEST_NATS_URL"), "nats://127.0.0.1:4222") }

// Required reports whether integration servers must be reachable.
func Required() bool { return os.Getenv("HUB_REQUIRE_INTEGRATION") == "1" }

// Require skips (or, when Required, fails) t unless a TCP connection to
// rawAddr succeeds. rawAddr may be host:port or a URL with a host.
func Require(t testing.TB, service, rawAddr string) {
	t.Helper()
	addr := rawAddr
	if u, err := url.Parse(rawAddr); err == nil && u.Host != "" {
		addr = u.Host
		if u.Port() == "" {
			switch u.Scheme {
			case "http":
				addr += ":80"
			case "https":
				addr += ":443"
			case "amqp":
				addr += ":5672"
			case "amqps":
				addr += ":5671"
			}
		}
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	msg := service + " is not reachable at " + addr + " (" + err.Error() + "); start it (see .ci/run) or set the HUB_TEST_* variable"
	if Required() {
		t.Fatal(msg + "; HUB_REQUIRE_INTEGRATION=1 makes this a failure")
	}
	t.Skip(msg)
}

// RedisAddr is host:port of Redis (HUB_TEST_REDIS_ADDR).
func RedisAddr() string { return cmp.Or(os.Getenv("HUB_TEST_REDIS_ADDR"), "127.0.0.1:6379") }

// PostgresDSN is a pgx connection string for the test database
// (HUB_TEST_POSTGRES_DSN).
func PostgresDSN() string {
	return cmp.Or(os.Getenv("HUB_TEST_POSTGRES_DSN"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// SQSEndpoint is the SQS emulator's endpoint (HUB_TEST_SQS_ENDPOINT; fauxqs,
// started by .ci/run or scripts/fauxqs).
func SQSEndpoint() string {
	return cmp.Or(os.Getenv("HUB_TEST_SQS_ENDPOINT"), "http://127.0.0.1:4566")
}
