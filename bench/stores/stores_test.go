package stores

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/harvesthub/hub/idempotency"
	"github.com/harvesthub/hub/idempotency/pgstore"
	"github.com/harvesthub/hub/idempotency/redisstore"
	"github.com/harvesthub/hub/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// parallelism multiplies GOMAXPROCS into the goroutines of a parallel run:
// network stores are bound by round trips, not CPU, so a worker runs many
// handlers at once.
const parallelism = 8

// BenchmarkClaimComplete measures Claim then Complete of a fresh key, the
// store's cost for one successfully handled message, serially and from
// GOMAXPROCS*8 goroutines.
func BenchmarkClaimComplete(b *testing.B) {
	for _, tc := range []struct {
		name     string
		newStore func(b *testing.B) idempotency.Store
	}{
		{"memory", newMemory},
		{"redis", newRedis},
		{"postgres", newPostgres},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.newStore(b)
			prefix := "bench-" + randomHex(6) + "-"
			var seq atomic.Uint64
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					claimComplete(b, s, prefix, &seq)
				}
				reportOpsPerSec(b)
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(parallelism)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						claimComplete(b, s, prefix, &seq)
					}
				})
				reportOpsPerSec(b)
			})
		})
	}
}

func claimComplete(b *testing.B, s idempotency.Store, prefix string, seq *atomic.Uint64) {
	ctx := context.Background()
	key := prefix + strconv.FormatUint(seq.Add(1), 10)
	c, err := s.Claim(ctx, key, time.Minute)
	if err != nil || c.Status != idempotency.Acquired {
		b.Errorf("claim %s: %v %v", key, c.Status, err)
		return
	}
	if err := s.Complete(ctx, key, c.Token, time.Minute); err != nil {
		b.Errorf("complete %s: %v", key, err)
	}
}

func reportOpsPerSec(b *testing.B) {
	if d := b.Elapsed(); d > 0 {
		b.ReportMetric(float64(b.N)/d.Seconds(), "ops/s")
	}
}

func newMemory(b *testing.B) idempotency.Store {
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func newRedis(b *testing.B) idempotency.Store {
	testenv.Require(b, "Redis", testenv.RedisAddr())
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr()})
	b.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, redisstore.Config{Prefix: "hub:bench:"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func newPostgres(b *testing.B) idempotency.Store {
	testenv.Require(b, "PostgreSQL", testenv.PostgresDSN())
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresDSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	table := "hub_idem_bench_" + randomHex(6)
	b.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	s, err := pgstore.New(pool, pgstore.Config{Table: table})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

func randomHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}
