package jobs

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemoryStore is an in-process [Store]: one replica's jobs, lost when the
// process exits. It is safe for concurrent use and owns no goroutine.
type MemoryStore struct {
	mu     sync.Mutex
	jobs   map[string]*Job
	closed bool
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{jobs: make(map[string]*Job)} }

// Record implements [Store.Record].
func (s *MemoryStore) Record(ctx context.Context, id string, ev Event) error {
	ev, err := Check(id, ev)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	j := s.jobs[id]
	if j == nil {
		j = &Job{ID: id, CreatedAt: ev.At}
		s.jobs[id] = j
	}
	if ev.Key != "" && slices.ContainsFunc(j.History, func(e Event) bool { return e.Key == ev.Key }) {
		return nil
	}
	j.History = append(j.History, ev)
	j.State, j.Reason, j.UpdatedAt = ev.State, ev.Reason, ev.At
	return nil
}

// Get implements [Store.Get].
func (s *MemoryStore) Get(ctx context.Context, id string) (Job, error) {
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Job{}, ErrClosed
	}
	j := s.jobs[id]
	if j == nil {
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	out := *j
	out.History = slices.Clone(j.History)
	return out, nil
}

// Ping implements [Store.Ping].
func (s *MemoryStore) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return ctx.Err()
}

// Close implements [Store.Close].
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

var _ Store = (*MemoryStore)(nil)
