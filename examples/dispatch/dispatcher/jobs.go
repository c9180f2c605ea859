package dispatcher

import (
	"container/list"
	"sync"
	"time"
)

// Job statuses.
const (
	StatusDispatched = "dispatched" // an IndexJob was published
	StatusIndexed    = "indexed"    // the index service reported it searchable
)

// Job is the status of one document's indexing, as GET /v1/jobs/{id} shows it.
type Job struct {
	DocID         string    `json:"doc_id"`
	Status        string    `json:"status"`
	Source        string    `json:"source,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	IngestedAt    time.Time `json:"ingested_at,omitzero"`
	DispatchedAt  time.Time `json:"dispatched_at,omitzero"`
	IndexedAt     time.Time `json:"indexed_at,omitzero"`
	// Dispatches counts how often the record was dispatched (re-ingested).
	Dispatches int `json:"dispatches"`
	// Index names the backend that indexed it.
	Index string `json:"index,omitempty"`
}

// Jobs is a bounded in-memory table of job statuses: once it holds Max
// jobs, recording a new one evicts the least recently updated. It is safe
// for concurrent use. A production deployment with several dispatch
// replicas would keep this in Redis or PostgreSQL; a replica answers for the
// jobs it saw.
type Jobs struct {
	mu    sync.Mutex
	max   int
	order *list.List               // front: most recently updated
	byID  map[string]*list.Element // of *Job
}

// JobsDefault is the bound NewJobs uses for max <= 0.
const JobsDefault = 10000

// NewJobs returns a table holding at most max jobs. Defaults to
// JobsDefault when max <= 0.
func NewJobs(max int) *Jobs {
	if max <= 0 {
		max = JobsDefault
	}
	return &Jobs{max: max, order: list.New(), byID: make(map[string]*list.Element)}
}

// update applies fn to the job docID, creating it when absent.
func (j *Jobs) update(docID string, fn func(*Job)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.byID[docID]
	if ok {
		j.order.MoveToFront(e)
	} else {
		e = j.order.PushFront(&Job{DocID: docID})
		j.byID[docID] = e
		for j.order.Len() > j.max {
			old := j.order.Back()
			j.order.Remove(old)
			delete(j.byID, old.Value.(*Job).DocID)
		}
	}
	fn(e.Value.(*Job))
}

// Dispatched records that an IndexJob for docID was published at t. A job
// already indexed goes back to dispatched: a newer version is on its way.
func (j *Jobs) Dispatched(docID, source, tenant, correlationID string, ingestedAt, t time.Time) {
	j.update(docID, func(job *Job) {
		job.Status = StatusDispatched
		job.Source, job.Tenant, job.CorrelationID = source, tenant, correlationID
		job.IngestedAt, job.DispatchedAt = ingestedAt, t
		job.IndexedAt, job.Index = time.Time{}, ""
		job.Dispatches++
	})
}

// Indexed records that docID became searchable at t. An indexed report
// older than the latest dispatch is ignored.
func (j *Jobs) Indexed(docID, index string, t time.Time) {
	j.update(docID, func(job *Job) {
		if !job.DispatchedAt.IsZero() && t.Before(job.DispatchedAt) {
			return
		}
		job.Status, job.IndexedAt, job.Index = StatusIndexed, t, index
	})
}

// Get returns a copy of the job docID.
func (j *Jobs) Get(docID string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.byID[docID]
	if !ok {
		return Job{}, false
	}
	return *e.Value.(*Job), true
}

// Len is the number of jobs held.
func (j *Jobs) Len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.order.Len()
}
