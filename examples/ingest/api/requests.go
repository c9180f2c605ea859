package api

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"
)

// requests remembers, per tenant-scoped Idempotency-Key, the hash of the
// request first sent with it, so a key reused with another body is refused
// (409) instead of silently acknowledged. It is bounded: at most max keys,
// each for ttl; the least recently used are forgotten first. It is per
// process: replicas behind a load balancer need a shared table (Redis,
// PostgreSQL) for the same guarantee across replicas.
type requests struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	order *list.List // front: most recently used; values *request
	byKey map[string]*list.Element
}

type request struct {
	key  string
	hash [sha256.Size]byte
	at   time.Time
}

func newRequests(max int, ttl time.Duration) *requests {
	return &requests{max: max, ttl: ttl, order: list.New(), byKey: make(map[string]*list.Element)}
}

// remember records hash for key at now and reports whether the request may
// go on: true for a new (or expired) key and for the same hash again, false
// for a key already used with another hash.
func (q *requests) remember(key string, hash [sha256.Size]byte, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.byKey[key]; ok {
		r := e.Value.(*request)
		if now.Sub(r.at) < q.ttl {
			q.order.MoveToFront(e)
			return r.hash == hash
		}
		q.order.Remove(e)
		delete(q.byKey, key)
	}
	q.byKey[key] = q.order.PushFront(&request{key: key, hash: hash, at: now})
	for q.order.Len() > q.max {
		old := q.order.Back()
		q.order.Remove(old)
		delete(q.byKey, old.Value.(*request).key)
	}
	return true
}

// recordsHash is the hash of a request's records, as decoded: the same
// records in the same order hash alike however the JSON was spaced.
func recordsHash(recs []Record) [sha256.Size]byte {
	b, _ := json.Marshal(recs) // Record marshals without error
	return sha256.Sum256(b)
}

// hash is a short hash of the record's content, part of its default
// idempotency key: an exact repeat has the same key, an update a new one.
func (r Record) hash() string {
	b, _ := json.Marshal(r)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}
