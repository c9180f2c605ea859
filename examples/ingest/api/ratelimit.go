package api

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters keeps one token bucket per credential, at most max of them. It
// needs no goroutine: idle buckets are dropped as others are used.
//
// A bucket is idle once it has refilled to its burst: a new bucket is
// exactly the same, so dropping it forgets nothing. When max buckets are all
// busy, the least recently used is dropped; its credential then starts
// again with a full bucket, a leniency bounded by one burst per eviction.
type limiters struct {
	limit rate.Limit
	burst int
	max   int
	// refill is how long an emptied bucket takes to fill up again.
	refill time.Duration

	mu  sync.Mutex
	lru *list.List // of *limiterEntry, most recently used first
	m   map[string]*list.Element
}

type limiterEntry struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

func newLimiters(limit rate.Limit, burst, max int) *limiters {
	refill := time.Duration(math.MaxInt64)
	if limit == rate.Inf {
		refill = 0
	} else if limit > 0 {
		refill = time.Duration(float64(burst) / float64(limit) * float64(time.Second))
	}
	return &limiters{limit: limit, burst: burst, max: max, refill: refill, lru: list.New(), m: make(map[string]*list.Element)}
}

// reserve takes one token for key at now. It returns 0 when the request may
// proceed, or how long the caller should wait before trying again.
func (l *limiters) reserve(key string, now time.Time) time.Duration {
	if l.limit == rate.Inf {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	var e *limiterEntry
	if el, ok := l.m[key]; ok {
		l.lru.MoveToFront(el)
		e = el.Value.(*limiterEntry)
	} else {
		if l.lru.Len() >= l.max {
			l.drop(l.lru.Back())
		}
		e = &limiterEntry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = l.lru.PushFront(e)
	}
	e.last = now
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		// Refused: give the token back so waiting clients are not
		// pushed further out by their own retries.
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep drops idle buckets from the least recently used end.
func (l *limiters) sweep(now time.Time) {
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		if now.Sub(el.Value.(*limiterEntry).last) < l.refill {
			return
		}
		l.drop(el)
	}
}

func (l *limiters) drop(el *list.Element) {
	delete(l.m, el.Value.(*limiterEntry).key)
	l.lru.Remove(el)
}

func (l *limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
