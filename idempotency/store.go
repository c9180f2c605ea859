package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Sentinel errors.
var (
	// ErrEmptyKey is returned by every Store method that takes a key when
	// the key is empty.
	ErrEmptyKey = errors.New("idempotency: empty key")
	// ErrLeaseLost is returned by Extend when the caller's claim is no longer
	// held: the lease expired and another worker claimed the key, or it was
	// completed or released.
	ErrLeaseLost = errors.New("idempotency: lease lost")
	// ErrClosed is returned by a store used after Close.
	ErrClosed = errors.New("idempotency: store closed")
)

// Status is the outcome of a Claim.
type Status int

const (
	// Acquired: the caller holds the key until the lease ends, and must
	// Complete or Release it.
	Acquired Status = iota + 1
	// Completed: the key was handled already; the message is a duplicate.
	Completed
	// Busy: another worker holds a live lease on the key.
	Busy
)

func (s Status) String() string {
	switch s {
	case Acquired:
		return "acquired"
	case Completed:
		return "completed"
	case Busy:
		return "busy"
	}
	return "unknown"
}

// Claim is the result of Store.Claim.
type Claim struct {
	Status Status
	// Token identifies this claim (Acquired only). Extend and Release act
	// only when it matches the current holder.
	Token string
	// LeaseUntil is when the current holder's lease ends (Busy only; the zero
	// time when the store cannot tell).
	LeaseUntil time.Time
}

// Store records which keys are being handled and which are done.
//
// Every method may be called concurrently from many goroutines and, for
// distributed stores, many processes. The context bounds the call only.
type Store interface {
	// Claim takes key for lease unless it is completed or held by a live
	// lease. An expired lease can be claimed again. lease must be positive.
	// On an error the returned Claim is never Acquired: a store that cannot
	// be reached never hands out a key.
	Claim(ctx context.Context, key string, lease time.Duration) (Claim, error)
	// Extend renews the lease of the claim identified by token to lease from
	// now, or returns ErrLeaseLost when that claim is no longer held (its
	// lease ended, or the key was released, completed or claimed again).
	Extend(ctx context.Context, key, token string, lease time.Duration) error
	// Complete marks key done for retention (positive): Claim answers
	// Completed until retention has passed. It succeeds even if the lease
	// was lost or the key is held by another claim: the work is done either
	// way.
	Complete(ctx context.Context, key, token string, retention time.Duration) error
	// Release gives up the claim identified by token, so the key can be
	// claimed again at once. Releasing a claim that is no longer held does
	// nothing and returns nil.
	Release(ctx context.Context, key, token string) error
	// Ping returns nil when the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources. It is safe to call twice.
	Close() error
}

// MaxKeyLen is the longest key stores keep as it is. Longer keys are
// replaced by [NormalizeKey] with "sha256:" and the hex SHA-256 of the key,
// so arbitrarily long keys cost a fixed 71 bytes and stay distinct.
const MaxKeyLen = 200

// NormalizeKey returns key, or "sha256:<hex>" of it when it is longer than
// MaxKeyLen. Stores call it on every key they are given.
func NormalizeKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}
