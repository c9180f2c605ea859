package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
)

// ProblemTypeBase prefixes the "type" URI of every problem this API
// answers; the suffix is one of the Problem* slugs.
const ProblemTypeBase = "https://harvesthub.dev/problems/"

// Problem type slugs, appended to ProblemTypeBase.
const (
	ProblemMalformed        = "malformed-request"      // 400
	ProblemValidation       = "validation-failed"      // 422
	ProblemUnauthenticated  = "unauthenticated"        // 401
	ProblemForbidden        = "insufficient-scope"     // 403
	ProblemNotFound         = "not-found"              // 404
	ProblemMethod           = "method-not-allowed"     // 405
	ProblemIdempotencyReuse = "idempotency-key-reused" // 409
	ProblemTooLarge         = "content-too-large"      // 413
	ProblemMediaType        = "unsupported-media-type" // 415
	ProblemRateLimited      = "rate-limited"           // 429
	ProblemUnavailable      = "publish-failed"         // 503
)

// Problem is an RFC 9457 problem details object, served as
// application/problem+json.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence ("urn:uuid:..."); it is logged
	// with the refusal, so support can find it.
	Instance string `json:"instance,omitempty"`
	// Errors lists every invalid field of a 422 (and the one decoding error
	// of a 400 when it is tied to a line or field).
	// It holds at most MaxReportedErrors entries; ErrorCount is the total.
	Errors []FieldError `json:"errors,omitempty"`
	// ErrorCount is how many errors were found, when more than Errors
	// lists.
	ErrorCount int `json:"error_count,omitempty"`
}

// MaxReportedErrors bounds Problem.Errors: a body of many bad lines gets
// the first ones and a count, not one entry per line.
const MaxReportedErrors = 20

// FieldError is one invalid field of one record.
type FieldError struct {
	// Line is the 1-based NDJSON line; absent (0) for application/json.
	Line int `json:"line,omitempty"`
	// Field is the JSON field name, such as "url"; absent when the error
	// concerns the whole line or body.
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

func newProblem(status int, slug, detail string) *Problem {
	return &Problem{Type: ProblemTypeBase + slug, Title: http.StatusText(status), Status: status, Detail: detail}
}

// newInstance returns a fresh "urn:uuid:" URN (UUID version 4).
func newInstance() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return "urn:uuid:" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}
