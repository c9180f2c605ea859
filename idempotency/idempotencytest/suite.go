// Package idempotencytest is the conformance suite for [idempotency.Store]
// implementations: a store that passes [Run] behaves as the hub expects.
//
// Call it from a test of the store's package:
//
//	func TestConformance(t *testing.T) {
//		idempotencytest.Run(t, func(t *testing.T) idempotency.Store {
//			s, err := mystore.New(...)
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// The suite works with stores that keep time on a server (Redis, PostgreSQL):
// it expires leases and retention for real, with leases of a fraction of a
// second, and waits for expiry by polling the store with a deadline. Every
// key it uses starts with a random prefix, so several runs can share one
// server at the same time.
package idempotencytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub/idempotency"
)

const (
	// shortLease is the lease (and retention) the suite lets expire. It is
	// long enough that two consecutive calls on a loaded CI machine fit in
	// it, and short enough that the parallel subtests finish in about a
	// second.
	shortLease = 300 * time.Millisecond
	// longLease is a lease no subtest outlives.
	longLease = time.Hour
	// waitFor bounds every wait for an expiry.
	waitFor = 10 * time.Second
	// pollEvery is how often a wait asks the store again.
	pollEvery = 10 * time.Millisecond
	// concurrentClaimers is the number of goroutines racing for one key.
	concurrentClaimers = 16
)

// Run runs the conformance suite as parallel subtests of t. newStore is
// called once per subtest, with the subtest's t, and must return a new,
// ready store (a fresh client on the shared server is fine). Run closes each
// store when its subtest ends; newStore may register its own cleanups with
// t.Cleanup (they run after that Close).
func Run(t *testing.T, newStore func(t *testing.T) idempotency.Store) {
	t.Helper()
	prefix := "idemtest-" + randomHex(8) + "-"
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s idempotency.Store, key string)
	}{
		{"ClaimCompleteDuplicate", testClaimCompleteDuplicate},
		{"ConcurrentClaims", testConcurrentClaims},
		{"LeaseExpiry", testLeaseExpiry},
		{"ExtendKeepsLease", testExtendKeepsLease},
		{"ExtendWithoutLease", testExtendWithoutLease},
		{"ExtendAfterExpiry", testExtendAfterExpiry},
		{"RetentionExpiry", testRetentionExpiry},
		{"ReleaseThenReclaim", testReleaseThenReclaim},
		{"StaleReleaseKeepsNewHolder", testStaleReleaseKeepsNewHolder},
		{"CompleteAfterLeaseLost", testCompleteAfterLeaseLost},
		{"ReleaseAfterComplete", testReleaseAfterComplete},
		{"EmptyKey", testEmptyKey},
		{"NonPositiveDurations", testNonPositiveDurations},
		{"OversizeKey", testOversizeKey},
		{"BinaryKey", testBinaryKey},
		{"KeysAreIndependent", testKeysAreIndependent},
		{"CanceledContext", testCanceledContext},
		{"UseAfterClose", testUseAfterClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			t.Cleanup(func() { _ = s.Close() })
			tc.run(t, s, prefix+tc.name+"-"+randomHex(4))
		})
	}
}

func testClaimCompleteDuplicate(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx))

	before := time.Now()
	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NotEmpty(t, c.Token, "an Acquired claim carries a token")

	busy := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Busy, busy.Status, "a live lease makes the key busy")
	require.Empty(t, busy.Token, "a Busy claim carries no token")
	if !busy.LeaseUntil.IsZero() {
		// Server clocks may differ a little from ours.
		require.WithinRange(t, busy.LeaseUntil, before.Add(longLease-time.Minute), time.Now().Add(longLease+time.Minute))
	}

	require.NoError(t, s.Complete(ctx, key, c.Token, longLease))
	for range 2 {
		dup := claim(t, s, key, longLease)
		require.Equal(t, idempotency.Completed, dup.Status, "a completed key is a duplicate")
		require.Empty(t, dup.Token)
	}
}

func testConcurrentClaims(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	keys := []string{key + "-a", key + "-b", key + "-c"}
	type result struct {
		key string
		c   idempotency.Claim
		err error
	}
	results := make(chan result, len(keys)*concurrentClaimers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, k := range keys {
		for range concurrentClaimers {
			wg.Go(func() {
				<-start
				c, err := s.Claim(ctx, k, longLease)
				results <- result{k, c, err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)

	acquired := map[string]int{}
	tokens := map[string]bool{}
	for r := range results {
		require.NoError(t, r.err)
		switch r.c.Status {
		case idempotency.Acquired:
			acquired[r.key]++
			require.False(t, tokens[r.c.Token], "token %q handed out twice", r.c.Token)
			tokens[r.c.Token] = true
		case idempotency.Busy:
		default:
			t.Fatalf("claim of %s: status %v, want acquired or busy", r.key, r.c.Status)
		}
	}
	for _, k := range keys {
		require.Equal(t, 1, acquired[k], "exactly one of %d concurrent claims of %s must acquire it", concurrentClaimers, k)
	}
}

func testLeaseExpiry(t *testing.T, s idempotency.Store, key string) {
	first := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Acquired, first.Status)
	require.Equal(t, idempotency.Busy, claim(t, s, key, shortLease).Status)

	second := awaitAcquired(t, s, key, longLease)
	require.NotEqual(t, first.Token, second.Token, "a reclaim gets a new token")
	require.ErrorIs(t, s.Extend(context.Background(), key, first.Token, longLease), idempotency.ErrLeaseLost,
		"the first holder's lease is lost once the key is reclaimed")
	require.Equal(t, idempotency.Busy, claim(t, s, key, shortLease).Status)
}

func testExtendKeepsLease(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	c := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	// The control key is claimed after key with the same lease: once it can
	// be claimed again, key's first lease has ended too.
	control := key + "-control"
	require.Equal(t, idempotency.Acquired, claim(t, s, control, shortLease).Status)
	require.NoError(t, s.Extend(ctx, key, c.Token, longLease))

	awaitAcquired(t, s, control, longLease)
	busy := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Busy, busy.Status, "Extend must keep the lease past its first end")
	require.NoError(t, s.Extend(ctx, key, c.Token, longLease), "the holder can extend again")
	require.NoError(t, s.Complete(ctx, key, c.Token, longLease))
	require.Equal(t, idempotency.Completed, claim(t, s, key, shortLease).Status)
}

func testExtendWithoutLease(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	require.ErrorIs(t, s.Extend(ctx, key+"-never-claimed", "token", longLease), idempotency.ErrLeaseLost)

	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.ErrorIs(t, s.Extend(ctx, key, c.Token+"-wrong", longLease), idempotency.ErrLeaseLost)
	require.ErrorIs(t, s.Extend(ctx, key, "", longLease), idempotency.ErrLeaseLost)
	require.NoError(t, s.Extend(ctx, key, c.Token, longLease))

	require.NoError(t, s.Release(ctx, key, c.Token))
	require.ErrorIs(t, s.Extend(ctx, key, c.Token, longLease), idempotency.ErrLeaseLost, "Extend after Release")

	c = claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Complete(ctx, key, c.Token, longLease))
	require.ErrorIs(t, s.Extend(ctx, key, c.Token, longLease), idempotency.ErrLeaseLost, "Extend after Complete")
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status, "a failed Extend changes nothing")
}

func testExtendAfterExpiry(t *testing.T, s idempotency.Store, key string) {
	c := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	control := key + "-control" // see testExtendKeepsLease
	require.Equal(t, idempotency.Acquired, claim(t, s, control, shortLease).Status)
	awaitAcquired(t, s, control, longLease)

	// Nobody has claimed key again, but its lease has ended: it cannot be
	// revived, since another worker may be about to claim it.
	require.ErrorIs(t, s.Extend(context.Background(), key, c.Token, longLease), idempotency.ErrLeaseLost)
	require.Equal(t, idempotency.Acquired, claim(t, s, key, longLease).Status)
}

func testRetentionExpiry(t *testing.T, s idempotency.Store, key string) {
	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Complete(context.Background(), key, c.Token, shortLease))
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status)

	again := awaitAcquired(t, s, key, longLease)
	require.NotEqual(t, c.Token, again.Token)
}

func testReleaseThenReclaim(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	first := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, first.Status)
	require.NoError(t, s.Release(ctx, key, first.Token))

	second := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, second.Status, "a released key can be claimed at once")
	require.NotEqual(t, first.Token, second.Token)

	require.NoError(t, s.Release(ctx, key, first.Token), "releasing a claim no longer held returns nil")
	require.Equal(t, idempotency.Busy, claim(t, s, key, longLease).Status, "a stale Release must not free the key")
	require.NoError(t, s.Release(ctx, key+"-never-claimed", "token"))
}

func testStaleReleaseKeepsNewHolder(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	first := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Acquired, first.Status)
	second := awaitAcquired(t, s, key, longLease)

	require.NoError(t, s.Release(ctx, key, first.Token))
	require.Equal(t, idempotency.Busy, claim(t, s, key, longLease).Status, "the new holder keeps the key")
	require.NoError(t, s.Extend(ctx, key, second.Token, longLease), "the new holder's lease is intact")
}

func testCompleteAfterLeaseLost(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	first := claim(t, s, key, shortLease)
	require.Equal(t, idempotency.Acquired, first.Status)
	second := awaitAcquired(t, s, key, longLease)

	require.NoError(t, s.Complete(ctx, key, first.Token, longLease), "Complete succeeds after the lease was lost")
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status)

	// The second holder learns it lost the key and cannot undo the completion.
	require.ErrorIs(t, s.Extend(ctx, key, second.Token, longLease), idempotency.ErrLeaseLost)
	require.NoError(t, s.Release(ctx, key, second.Token))
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status)
}

func testReleaseAfterComplete(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Complete(ctx, key, c.Token, longLease))
	require.NoError(t, s.Release(ctx, key, c.Token))
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status, "Release must never undo Complete")
	require.NoError(t, s.Complete(ctx, key, c.Token, longLease), "completing twice is fine")
	require.Equal(t, idempotency.Completed, claim(t, s, key, longLease).Status)
}

func testEmptyKey(t *testing.T, s idempotency.Store, _ string) {
	ctx := context.Background()
	c, err := s.Claim(ctx, "", longLease)
	require.ErrorIs(t, err, idempotency.ErrEmptyKey)
	require.NotEqual(t, idempotency.Acquired, c.Status)
	require.ErrorIs(t, s.Extend(ctx, "", "token", longLease), idempotency.ErrEmptyKey)
	require.ErrorIs(t, s.Complete(ctx, "", "token", longLease), idempotency.ErrEmptyKey)
	require.ErrorIs(t, s.Release(ctx, "", "token"), idempotency.ErrEmptyKey)
}

func testNonPositiveDurations(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	for _, d := range []time.Duration{0, -time.Second} {
		c, err := s.Claim(ctx, key, d)
		require.Error(t, err, "Claim with lease %v", d)
		require.NotEqual(t, idempotency.Acquired, c.Status)
	}
	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status, "a rejected Claim takes nothing")
	require.Error(t, s.Extend(ctx, key, c.Token, 0), "Extend with lease 0")
	require.Error(t, s.Complete(ctx, key, c.Token, 0), "Complete with retention 0")
	require.Equal(t, idempotency.Busy, claim(t, s, key, longLease).Status, "a rejected Complete changes nothing")
}

func testOversizeKey(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	long := []byte(key + strings.Repeat("x", 1<<20))
	a := string(long)
	long[len(long)-1] = 'y'
	b := string(long)

	ca := claim(t, s, a, longLease)
	require.Equal(t, idempotency.Acquired, ca.Status, "a 1 MB key can be claimed")
	cb := claim(t, s, b, longLease)
	require.Equal(t, idempotency.Acquired, cb.Status, "keys differing in their last byte are distinct")

	require.NoError(t, s.Extend(ctx, a, ca.Token, longLease))
	require.NoError(t, s.Complete(ctx, a, ca.Token, longLease))
	require.Equal(t, idempotency.Completed, claim(t, s, a, longLease).Status)
	require.Equal(t, idempotency.Busy, claim(t, s, b, longLease).Status)
	require.NoError(t, s.Release(ctx, b, cb.Token))
	require.Equal(t, idempotency.Acquired, claim(t, s, b, longLease).Status)

	// Keys around the normalisation threshold are distinct too.
	at := key + strings.Repeat("z", idempotency.MaxKeyLen-len(key))
	require.Equal(t, idempotency.Acquired, claim(t, s, at, longLease).Status)
	require.Equal(t, idempotency.Acquired, claim(t, s, at+"z", longLease).Status)
}

func testBinaryKey(t *testing.T, s idempotency.Store, key string) {
	// Keys are arbitrary bytes: NUL and invalid UTF-8 must work and stay
	// distinct.
	a := key + "\x00\xff"
	b := key + "\x00\xfe"
	ca := claim(t, s, a, longLease)
	require.Equal(t, idempotency.Acquired, ca.Status)
	require.Equal(t, idempotency.Acquired, claim(t, s, b, longLease).Status)
	require.Equal(t, idempotency.Acquired, claim(t, s, key, longLease).Status)
	require.NoError(t, s.Complete(context.Background(), a, ca.Token, longLease))
	require.Equal(t, idempotency.Completed, claim(t, s, a, longLease).Status)
}

func testKeysAreIndependent(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	a := claim(t, s, key+"-a", longLease)
	require.Equal(t, idempotency.Acquired, a.Status)
	b := claim(t, s, key+"-b", longLease)
	require.Equal(t, idempotency.Acquired, b.Status)
	require.NoError(t, s.Complete(ctx, key+"-a", a.Token, longLease))
	require.Equal(t, idempotency.Busy, claim(t, s, key+"-b", longLease).Status)
	// A token is bound to its key.
	require.ErrorIs(t, s.Extend(ctx, key+"-b", a.Token, longLease), idempotency.ErrLeaseLost)
	require.NoError(t, s.Release(ctx, key+"-b", a.Token))
	require.Equal(t, idempotency.Busy, claim(t, s, key+"-b", longLease).Status)
}

func testCanceledContext(t *testing.T, s idempotency.Store, key string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := s.Claim(ctx, key, longLease)
	require.ErrorIs(t, err, context.Canceled)
	require.NotEqual(t, idempotency.Acquired, c.Status, "a failed Claim never reports Acquired")
	require.Equal(t, idempotency.Acquired, claim(t, s, key, longLease).Status, "a canceled Claim takes nothing")
}

func testUseAfterClose(t *testing.T, s idempotency.Store, key string) {
	ctx := context.Background()
	c := claim(t, s, key, longLease)
	require.Equal(t, idempotency.Acquired, c.Status)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is safe twice")

	got, err := s.Claim(ctx, key+"-after", longLease)
	require.ErrorIs(t, err, idempotency.ErrClosed)
	require.NotEqual(t, idempotency.Acquired, got.Status)
	require.ErrorIs(t, s.Extend(ctx, key, c.Token, longLease), idempotency.ErrClosed)
	require.ErrorIs(t, s.Complete(ctx, key, c.Token, longLease), idempotency.ErrClosed)
	require.ErrorIs(t, s.Release(ctx, key, c.Token), idempotency.ErrClosed)
	require.ErrorIs(t, s.Ping(ctx), idempotency.ErrClosed)
}

// claim claims key and fails t on an error.
func claim(t *testing.T, s idempotency.Store, key string, lease time.Duration) idempotency.Claim {
	t.Helper()
	c, err := s.Claim(context.Background(), key, lease)
	require.NoError(t, err)
	return c
}

// awaitAcquired claims key until it is acquired (a lease or retention ended)
// and returns that claim. Every answer before must be Busy or Completed.
func awaitAcquired(t *testing.T, s idempotency.Store, key string, lease time.Duration) idempotency.Claim {
	t.Helper()
	var (
		mu  sync.Mutex
		got idempotency.Claim
		err error
	)
	require.Eventually(t, func() bool {
		c, e := s.Claim(context.Background(), key, lease)
		mu.Lock()
		defer mu.Unlock()
		got, err = c, e
		return e != nil || c.Status == idempotency.Acquired
	}, waitFor, pollEvery, "key %s never became claimable", key)
	mu.Lock()
	defer mu.Unlock()
	require.NoError(t, err)
	require.NotEmpty(t, got.Token)
	return got
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
