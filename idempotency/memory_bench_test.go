package idempotency_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harvesthub/hub/idempotency"
)

// BenchmarkMemoryClaimRelease measures the memory store alone (claim, then release: a steady key space); it is how
// the shard count was chosen (run with -cpu 1,2,4,8).
func BenchmarkMemoryClaimRelease(b *testing.B) {
	s, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// A bounded key space keeps the map at a steady size, so the
			// figure is the locking and hashing, not map growth.
			key := "key-" + strconv.FormatUint(seq.Add(1)%100_000, 10)
			c, err := s.Claim(ctx, key, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if c.Status == idempotency.Acquired {
				_ = s.Release(ctx, key, c.Token)
			}
		}
	})
}
