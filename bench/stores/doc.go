// Package stores benchmarks the idempotency stores against each other:
// claim and complete of distinct keys, the hub's cost per message, on the
// memory store and the real Redis and PostgreSQL of internal/testenv.
//
//	go test -run '^$' -bench BenchmarkClaimComplete -benchmem ./bench/stores/
package stores
