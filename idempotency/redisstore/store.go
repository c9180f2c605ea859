package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/harvesthub/hub/idempotency"
)

// PrefixDefault is the default [Config.Prefix].
const PrefixDefault = "hub:idem:"

// Config configures a [Store]. The zero value is ready to use.
type Config struct {
	// Prefix is prepended to every key, so the store's keys never collide
	// with other data in the same Redis and can be found with SCAN
	// "<prefix>*". Defaults to [PrefixDefault] ("hub:idem:").
	Prefix string
}

// Value prefixes: a held claim and a completed key.
const (
	leasedTag    = "L:"
	completedTag = "C:"
)

// claimScript takes the key when it is free, or tells why it cannot.
// KEYS[1] the key; ARGV[1] "L:<token>"; ARGV[2] the lease in milliseconds.
// Returns {1} acquired, {2} completed, {3, pttl} busy. If the key already
// holds ARGV[1], this very claim was applied before a connection broke and
// go-redis retried it: it is reported as acquired again.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return {1}
end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
	return {1}
end
if v and string.sub(v, 1, 2) == 'C:' then
	return {2}
end
return {3, redis.call('PTTL', KEYS[1])}
`)

// extendScript renews the lease when the key holds ARGV[1] ("L:<token>").
// ARGV[2] is the lease in milliseconds. Returns 1 when renewed, else 0.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the key when it holds ARGV[1] ("L:<token>").
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// Store is an [idempotency.Store] on Redis. Its methods are safe for
// concurrent use by many goroutines and processes. It starts no goroutines.
type Store struct {
	client redis.UniversalClient
	prefix string

	tokenPrefix string
	tokenSeq    atomic.Uint64
	closed      atomic.Bool
}

// New returns a Store that keeps its keys in Redis through client. The
// client stays the caller's: Close does not close it. New does no I/O; call
// Ping to check that Redis is reachable.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: New needs a client, such as redis.NewClient(&redis.Options{Addr: \"127.0.0.1:6379\"})")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = PrefixDefault
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (Go 1.24+)
	return &Store{
		client:      client,
		prefix:      cfg.Prefix,
		tokenPrefix: hex.EncodeToString(id[:]) + "-",
	}, nil
}

// Claim implements [idempotency.Store.Claim] in one round trip.
func (s *Store) Claim(ctx context.Context, key string, lease time.Duration) (idempotency.Claim, error) {
	rkey, err := s.check(key, "lease", lease)
	if err != nil {
		return idempotency.Claim{}, err
	}
	token := s.newToken()
	res, err := claimScript.Run(ctx, s.client, []string{rkey}, leasedTag+token, millis(lease)).Int64Slice()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	if len(res) == 0 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: unexpected script reply %v", res)
	}
	switch res[0] {
	case 1:
		return idempotency.Claim{Status: idempotency.Acquired, Token: token}, nil
	case 2:
		return idempotency.Claim{Status: idempotency.Completed}, nil
	case 3:
		c := idempotency.Claim{Status: idempotency.Busy}
		if len(res) > 1 && res[1] > 0 {
			c.LeaseUntil = time.Now().Add(time.Duration(res[1]) * time.Millisecond)
		}
		return c, nil
	}
	return idempotency.Claim{}, fmt.Errorf("redisstore: claim: unexpected script reply %v", res)
}

// Extend implements [idempotency.Store.Extend] in one round trip.
func (s *Store) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	rkey, err := s.check(key, "lease", lease)
	if err != nil {
		return err
	}
	n, err := extendScript.Run(ctx, s.client, []string{rkey}, leasedTag+token, millis(lease)).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: extend: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Complete implements [idempotency.Store.Complete] in one round trip (SET
// PX, whoever holds the key).
func (s *Store) Complete(ctx context.Context, key, token string, retention time.Duration) error {
	rkey, err := s.check(key, "retention", retention)
	if err != nil {
		return err
	}
	if err := s.client.Set(ctx, rkey, completedTag+token, retention).Err(); err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	return nil
}

// Release implements [idempotency.Store.Release] in one round trip.
func (s *Store) Release(ctx context.Context, key, token string) error {
	rkey, err := s.check(key, "", 0)
	if err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, s.client, []string{rkey}, leasedTag+token).Err(); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

// Ping sends PING to Redis.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return idempotency.ErrClosed
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Close marks the store closed: later calls return [idempotency.ErrClosed].
// It does not close the client, which the caller owns. Close is safe to
// call more than once and always returns nil.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// check validates a call and returns the Redis key. what names the duration
// d, which must be positive; an empty what skips that check.
func (s *Store) check(key, what string, d time.Duration) (string, error) {
	if s.closed.Load() {
		return "", idempotency.ErrClosed
	}
	if key == "" {
		return "", idempotency.ErrEmptyKey
	}
	if what != "" && d <= 0 {
		return "", fmt.Errorf("redisstore: %s must be positive, got %v", what, d)
	}
	return s.prefix + idempotency.NormalizeKey(key), nil
}

// newToken returns a token unique across processes: a random per-store
// prefix and a counter.
func (s *Store) newToken() string {
	var buf [32]byte
	b := append(buf[:0], s.tokenPrefix...)
	b = strconv.AppendUint(b, s.tokenSeq.Add(1), 36)
	return string(b)
}

// millis rounds d up to whole milliseconds, Redis's TTL unit.
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

var _ idempotency.Store = (*Store)(nil)
