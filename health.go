package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// ReadinessTimeoutDefault bounds the checks of one readiness request when
// the request's own context has no earlier deadline.
const ReadinessTimeoutDefault = 5 * time.Second

// CheckError is one failed health check: Check names it ("broker",
// "idempotency", "handler <name>", "hub").
type CheckError struct {
	Check string
	Err   error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// HealthStatus is the JSON body of the health endpoints.
type HealthStatus struct {
	// Status is "ok", "stopping" or "unavailable".
	Status string `json:"status"`
	// Checks maps each failed check to its error text.
	Checks map[string]string `json:"checks,omitempty"`
}

// HealthHandler serves the hub's liveness on any path ending in /healthz
// and its readiness on any path ending in /readyz (see LivenessHandler and
// ReadinessHandler); other paths are 404. Mount it at the root or under a
// prefix:
//
//	mux.Handle("/healthz", hub.HealthHandler(h))
//	mux.Handle("/readyz", hub.HealthHandler(h))
func HealthHandler(h *Hub) http.Handler {
	live, ready := LivenessHandler(h), ReadinessHandler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/healthz"):
			live.ServeHTTP(w, r)
		case strings.HasSuffix(r.URL.Path, "/readyz"):
			ready.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// LivenessHandler answers 200 while the process can do work, including
// while it drains, and 503 once the hub is closed: an orchestrator should
// restart the process then. It checks no dependency (a broker outage is
// not cured by a restart; readiness reports it).
func LivenessHandler(h *Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.closed() {
			writeHealth(w, r, http.StatusServiceUnavailable, HealthStatus{Status: "unavailable",
				Checks: map[string]string{"hub": ErrClosed.Error()}})
			return
		}
		writeHealth(w, r, http.StatusOK, HealthStatus{Status: "ok"})
	})
}

// ReadinessHandler answers 200 when Health is nil, and 503 with a JSON
// HealthStatus naming every failed check otherwise, or "stopping" once
// shutdown has begun (so a load balancer stops sending work). The checks
// run with the request's context, bounded by ReadinessTimeoutDefault.
func ReadinessHandler(h *Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.stopping() {
			st := HealthStatus{Status: "stopping", Checks: map[string]string{"hub": "shutting down"}}
			if h.closed() {
				st = HealthStatus{Status: "unavailable", Checks: map[string]string{"hub": ErrClosed.Error()}}
			}
			writeHealth(w, r, http.StatusServiceUnavailable, st)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), ReadinessTimeoutDefault)
		defer cancel()
		err := h.Health(ctx)
		if err == nil {
			writeHealth(w, r, http.StatusOK, HealthStatus{Status: "ok"})
			return
		}
		writeHealth(w, r, http.StatusServiceUnavailable, HealthStatus{Status: "unavailable", Checks: failedChecks(err)})
	})
}

// failedChecks names each check in err.
func failedChecks(err error) map[string]string {
	out := map[string]string{}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		name := "hub"
		var ce *CheckError
		if errors.As(e, &ce) {
			name = ce.Check
		}
		if prev, dup := out[name]; dup {
			out[name] = prev + "; " + e.Error()
			continue
		}
		out[name] = e.Error()
	}
	return out
}

func writeHealth(w http.ResponseWriter, r *http.Request, code int, st HealthStatus) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(st)
}
