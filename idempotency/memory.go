package idempotency

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SweepIntervalDefault is the default [MemoryConfig.SweepInterval].
const SweepIntervalDefault = time.Minute

// memoryShards is the number of independently locked maps of a MemoryStore.
// Sharding keeps unrelated keys from contending for one mutex when many
// handler goroutines claim at once.
const memoryShards = 32

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// SweepInterval is how often the store's sweeper removes expired leases
	// and completed keys whose retention ended. Expired entries never change
	// an answer (they are checked on every call); sweeping only frees their
	// memory. Defaults to [SweepIntervalDefault] (one minute). Must not be
	// negative.
	SweepInterval time.Duration
	// Clock returns the current time. Defaults to time.Now. Tests set it to
	// a fake clock to expire leases and retention without waiting.
	Clock func() time.Time
}

// MemoryStore is an in-process [Store]: it protects one process (the hub's
// default when no distributed store is configured), and its state is lost
// when the process exits.
//
// Its methods are safe for concurrent use. It owns one goroutine, the
// sweeper, which [MemoryStore.Close] stops and waits for.
type MemoryStore struct {
	clock  func() time.Time
	seed   maphash.Seed
	shards [memoryShards]memoryShard

	tokenPrefix string
	tokenSeq    atomic.Uint64

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	_       [48]byte // one 64-byte cache line per shard
}

type memoryEntry struct {
	token     string
	completed bool
	// until is when the lease ends (held) or the retention ends (completed).
	until time.Time
}

// errNonPositive is wrapped by errors for a lease or retention <= 0.
var errNonPositive = errors.New("idempotency: duration must be positive")

// NewMemoryStore returns a MemoryStore and starts its sweeper. Call Close to
// stop it.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.SweepInterval < 0 {
		return nil, fmt.Errorf("idempotency: MemoryConfig.SweepInterval is %v; use a positive interval, or 0 for the default %v", cfg.SweepInterval, SweepIntervalDefault)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = SweepIntervalDefault
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	var prefix [8]byte
	_, _ = rand.Read(prefix[:]) // crypto/rand.Read never fails (Go 1.24+)
	s := &MemoryStore{
		clock:       cfg.Clock,
		seed:        maphash.MakeSeed(),
		tokenPrefix: hex.EncodeToString(prefix[:]) + "-",
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]memoryEntry)
	}
	go s.sweepLoop(cfg.SweepInterval)
	return s, nil
}

// Claim implements [Store.Claim].
func (s *MemoryStore) Claim(ctx context.Context, key string, lease time.Duration) (Claim, error) {
	key, err := s.check(ctx, key)
	if err == nil {
		err = checkPositive("lease", lease)
	}
	if err != nil {
		return Claim{}, err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	if e, ok := sh.entries[key]; ok && now.Before(e.until) {
		if e.completed {
			return Claim{Status: Completed}, nil
		}
		return Claim{Status: Busy, LeaseUntil: e.until}, nil
	}
	token := s.newToken()
	sh.entries[key] = memoryEntry{token: token, until: now.Add(lease)}
	return Claim{Status: Acquired, Token: token}, nil
}

// Extend implements [Store.Extend].
func (s *MemoryStore) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	key, err := s.check(ctx, key)
	if err == nil {
		err = checkPositive("lease", lease)
	}
	if err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	e, ok := sh.entries[key]
	if !ok || e.completed || e.token != token || !now.Before(e.until) {
		return ErrLeaseLost
	}
	e.until = now.Add(lease)
	sh.entries[key] = e
	return nil
}

// Complete implements [Store.Complete].
func (s *MemoryStore) Complete(ctx context.Context, key, token string, retention time.Duration) error {
	key, err := s.check(ctx, key)
	if err == nil {
		err = checkPositive("retention", retention)
	}
	if err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.entries[key] = memoryEntry{token: token, completed: true, until: s.clock().Add(retention)}
	return nil
}

// Release implements [Store.Release].
func (s *MemoryStore) Release(ctx context.Context, key, token string) error {
	key, err := s.check(ctx, key)
	if err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok && !e.completed && e.token == token {
		delete(sh.entries, key)
	}
	return nil
}

// Ping implements [Store.Ping]: nil until the store is closed.
func (s *MemoryStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// Close stops the sweeper and waits for it to return. Later calls to the
// store return [ErrClosed]. Close is safe to call more than once and always
// returns nil.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
	})
	return nil
}

// check validates a call and returns the normalised key.
func (s *MemoryStore) check(ctx context.Context, key string) (string, error) {
	if s.closed.Load() {
		return "", ErrClosed
	}
	if key == "" {
		return "", ErrEmptyKey
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("idempotency: %w", err)
	}
	return NormalizeKey(key), nil
}

// checkPositive rejects a lease or retention that is not positive.
func checkPositive(what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %s is %v", errNonPositive, what, d)
	}
	return nil
}

func (s *MemoryStore) shard(key string) *memoryShard {
	return &s.shards[maphash.String(s.seed, key)%memoryShards]
}

// newToken returns a token unique to this store: a random per-store prefix
// and a counter, so making one costs one small allocation.
func (s *MemoryStore) newToken() string {
	var buf [32]byte
	b := append(buf[:0], s.tokenPrefix...)
	b = strconv.AppendUint(b, s.tokenSeq.Add(1), 36)
	return string(b)
}

func (s *MemoryStore) sweepLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep removes expired entries, one shard at a time so claims on other
// shards are never blocked by it.
func (s *MemoryStore) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		now := s.clock()
		for k, e := range sh.entries {
			if !now.Before(e.until) {
				delete(sh.entries, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len returns the number of entries, expired or not (tests).
func (s *MemoryStore) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

var _ Store = (*MemoryStore)(nil)
