// Package jobs records the life of a pipeline job (a harvested record on
// its way to the index): each step appends an [Event] to the job's
// history, and any replica can read the job back. [Store] is the contract;
// [MemoryStore] keeps one process's jobs; the PostgreSQL store (module
// github.com/harvesthub/hub/jobs/pgjobs) shares them across replicas and
// records a job in the caller's transaction. Every store passes
// jobstest.Run.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is a step in a job's life.
type State string

// The states of a job, in the order a healthy job passes them. A failed
// job may be replayed, and then dispatched and indexed again.
const (
	Ingested   State = "ingested"   // the record was accepted
	Dispatched State = "dispatched" // its index job was staged
	Indexed    State = "indexed"    // the index has it
	Failed     State = "failed"     // a step failed; Event.Reason says why
	Replayed   State = "replayed"   // an operator sent it through again
)

// Valid reports whether s is one of the states above.
func (s State) Valid() bool {
	switch s {
	case Ingested, Dispatched, Indexed, Failed, Replayed:
		return true
	}
	return false
}

// Limits on what a store accepts.
const (
	MaxIDLen     = 200  // bytes of a job ID or an event key
	MaxReasonLen = 4096 // bytes of a failure reason
)

// Sentinel errors.
var (
	// ErrNotFound is returned by Get for a job with no recorded event.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrInvalid wraps every refusal of bad input (empty or overlong ID,
	// unknown state, a failure without a reason).
	ErrInvalid = errors.New("jobs: invalid input")
	// ErrClosed is returned by a store used after Close.
	ErrClosed = errors.New("jobs: store closed")
)

// Event is one step of a job's history.
type Event struct {
	// State the job reached.
	State State `json:"state"`
	// Reason says why the step failed (required with Failed, at most
	// MaxReasonLen bytes), or anything worth keeping about the step.
	Reason string `json:"reason,omitempty"`
	// At is when it happened. Zero means now (the store's clock).
	At time.Time `json:"at"`
	// Key deduplicates: an event whose Key the job has already recorded is
	// not recorded again, so a step delivered twice (at-least-once brokers)
	// appears once. Use the message's ID or idempotency key. Empty means
	// no deduplication.
	Key string `json:"key,omitempty"`
}

// Job is a job and its history.
type Job struct {
	ID string `json:"id"`
	// State and Reason are those of the last recorded event.
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// CreatedAt is the time of the first event, UpdatedAt of the last.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// History lists every event, in the order they were recorded.
	History []Event `json:"history"`
}

// Store records jobs. Every method may be called concurrently, from many
// goroutines and, for shared stores, many processes; the context bounds
// the call only.
type Store interface {
	// Record appends ev to job id's history, creating the job at its first
	// event, and makes ev's state the job's state. An event whose Key the
	// job already has is ignored (nil error).
	Record(ctx context.Context, id string, ev Event) error
	// Get returns the job with its history, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, id string) (Job, error)
	// Ping returns nil when the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources; it is safe to call twice.
	Close() error
}

// Check validates a Record call; stores call it first. It returns ev with
// At set (to now, in UTC, when zero).
func Check(id string, ev Event) (Event, error) {
	switch {
	case id == "":
		return ev, fmt.Errorf("%w: empty job ID", ErrInvalid)
	case len(id) > MaxIDLen:
		return ev, fmt.Errorf("%w: job ID of %d bytes; at most %d", ErrInvalid, len(id), MaxIDLen)
	case !ev.State.Valid():
		return ev, fmt.Errorf("%w: state %q; use ingested, dispatched, indexed, failed or replayed", ErrInvalid, ev.State)
	case ev.State == Failed && ev.Reason == "":
		return ev, fmt.Errorf("%w: a failed event needs a reason", ErrInvalid)
	case len(ev.Reason) > MaxReasonLen:
		return ev, fmt.Errorf("%w: reason of %d bytes; at most %d", ErrInvalid, len(ev.Reason), MaxReasonLen)
	case len(ev.Key) > MaxIDLen:
		return ev, fmt.Errorf("%w: event key of %d bytes; at most %d", ErrInvalid, len(ev.Key), MaxIDLen)
	}
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	ev.At = ev.At.UTC()
	return ev, nil
}
