// Package testenv finds the real servers integration tests run against.
//
// Addresses come from HUB_TEST_* variables with this machine's defaults. A
// test that needs a server calls [Require]: when the server is unreachable
// the test is skipped with a clear message, or fails when
// HUB_REQUIRE_INTEGRATION=1 (CI sets it), so CI never passes on skips.
package testenv

import (
	"cmp"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// Addresses of the integration servers, with their defaults.
func AMQPURL() string {
	return cmp.Or(os.Getenv("HUB_TEST_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")
}

// SQSEndpoint is the SQS emulator's endpoint (fauxqs, started by .ci/run or
// scripts/fauxqs).
func SQSEndpoint() string {
	return cmp.Or(os.Getenv("HUB_TEST_SQS_ENDPOINT"), "http://127.0.0.1:4566")
}

// NATSURL is the NATS server's URL (JetStream enabled).
func NATSURL() string { return cmp.Or(os.Getenv("HUB_TEST_NATS_URL"), "nats://127.0.0.1:4222") }

// RedisAddr is host:port of Redis.
func RedisAddr() string { return cmp.Or(os.Getenv("HUB_TEST_REDIS_ADDR"), "127.0.0.1:6379") }

// PostgresDSN is a pgx connection string for the test database.
func PostgresDSN() string {
	return cmp.Or(os.Getenv("HUB_TEST_POSTGRES_DSN"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

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
			case "nats":
				addr += ":4222"
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
