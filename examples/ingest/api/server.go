package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/examples/internal/records"
	"github.com/harvesthub/hub/examples/internal/tenant"
)

// Media types of POST /v1/records.
const (
	MediaJSON   = "application/json"
	MediaNDJSON = "application/x-ndjson"
)

// Server is the ingest HTTP API. Create it with New, serve Handler, and
// Close it when the http.Server has shut down.
type Server struct {
	cfg      Config
	jwt      *jwtVerifier // nil: bearer tokens refused
	limiters *limiters
	log      *slog.Logger
	mux      *http.ServeMux
	requests *requests // Idempotency-Key -> request hash

	closeOnce sync.Once
}

// New validates cfg, fills its defaults and, when JWKSURL is set, fetches
// the JWKS (failing if it cannot) and starts its background refresh.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, limiters: newLimiters(cfg.RateLimit, cfg.Burst, cfg.RateLimitKeys)}
	if cfg.JWKSURL != "" {
		v, err := newJWTVerifier(cfg.JWKSURL, cfg.JWT, cfg.Now, cfg.Logger)
		if err != nil {
			return nil, err
		}
		s.jwt = v
	}
	s.requests = newRequests(cfg.IdempotencyKeys, cfg.IdempotencyTTL)
	s.mux = http.NewServeMux()
	if cfg.Hub != nil {
		s.mux.HandleFunc("/v1/records", s.postRecords)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, newProblem(http.StatusNotFound, ProblemNotFound, "no such resource; records are posted to /v1/records"), nil)
	})
	return s, nil
}

// Handler returns the API's routes: POST /v1/records (when Config.Hub is
// set). It is safe for concurrent use.
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops the JWKS refresh goroutine and waits for it to return. It is
// safe to call more than once. Requests served after Close still work with
// the last fetched keys.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.jwt != nil {
			s.jwt.close()
		}
	})
	return nil
}

// principal is an authenticated caller.
type principal struct {
	id     string // "key:<id>", "jwt:<sub>" or "cert:<cn>": the rate-limit key
	tenant string
	scopes []string
	bearer bool
}

// Tenant is the caller's tenant: the credential's tenant or, when it has
// none, the credential itself ("key:<id>", "jwt:<sub>", "cert:<cn>"), so a
// credential without a tenant is a tenant of its own and shares nothing.
func (p principal) Tenant() string {
	if p.tenant != "" {
		return p.tenant
	}
	return p.id
}

// allows reports whether p holds one of scopes. A bearer token's
// configured write scope (JWTConfig.RequiredScope) stands for ScopeWrite.
func (s *Server) allows(p principal, scopes []string) bool {
	for _, sc := range scopes {
		if p.bearer && sc == ScopeWrite {
			sc = s.cfg.JWT.RequiredScope
		}
		if slices.Contains(p.scopes, sc) {
			return true
		}
	}
	return false
}

// Require serves h only to callers whose credential (API key, bearer JWT
// or client certificate, as POST /v1/records accepts them) holds one of
// scopes, within the same per-credential rate limit, and passes the
// caller's tenant to h in the request context (tenant.From). Other callers
// get a problem+json 401, 403 or 429. The index and dispatch services
// guard their read endpoints with it: Require(h, ScopeRead, ScopeWrite).
func (s *Server) Require(h http.Handler, scopes ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.admit(w, r, scopes)
		if !ok {
			return
		}
		h.ServeHTTP(w, r.WithContext(tenant.With(r.Context(), p.Tenant())))
	})
}

// Guard returns Require for scopes as a middleware, the shape the index's
// and dispatcher's Routes take.
func (s *Server) Guard(scopes ...string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler { return s.Require(h, scopes...) }
}

// admit authenticates r, checks its scopes and rate limit, and answers the
// refusal itself when ok is false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, scopes []string) (p principal, ok bool) {
	p, aerr := s.authenticate(r)
	if aerr != nil {
		if aerr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", s.challenge(aerr.bearerError, aerr.detail))
			s.refuse(w, r, newProblem(http.StatusUnauthorized, ProblemUnauthenticated, aerr.detail), nil)
			return p, false
		}
		s.refuse(w, r, newProblem(aerr.status, ProblemMalformed, aerr.detail), nil)
		return p, false
	}
	if !s.allows(p, scopes) {
		need := scopes[0]
		if p.bearer && need == ScopeWrite {
			need = s.cfg.JWT.RequiredScope
		}
		if p.bearer {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="harvest-hub", error="insufficient_scope", scope=%q`, need))
		}
		s.refuse(w, r, newProblem(http.StatusForbidden, ProblemForbidden, fmt.Sprintf("the credential lacks the scope %q", need)), &p)
		return p, false
	}
	if wait := s.limiters.reserve(p.id, s.cfg.Now()); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.refuse(w, r, newProblem(http.StatusTooManyRequests, ProblemRateLimited, fmt.Sprintf("too many requests for this credential; retry after %d s", secs)), &p)
		return p, false
	}
	return p, true
}

// authError is a refused credential: 401, or 400 for an ambiguous one.
type authError struct {
	status int
	detail string
	// bearerError is the RFC 6750 error code for bearer challenges.
	bearerError string
}

func (s *Server) challenge(bearerError, desc string) string {
	var parts []string
	if s.cfg.Keys != nil {
		parts = append(parts, `ApiKey realm="harvest-hub"`)
	}
	if s.jwt != nil {
		b := `Bearer realm="harvest-hub"`
		if bearerError != "" {
			b += fmt.Sprintf(`, error=%q, error_description=%q`, bearerError, desc)
		}
		parts = append(parts, b)
	}
	if len(parts) == 0 {
		parts = append(parts, `Mutual realm="harvest-hub"`)
	}
	return strings.Join(parts, ", ")
}

// authenticate finds the caller's credential: the Authorization header
// (ApiKey or Bearer), else X-API-Key, else a verified client certificate
// listed in Config.ClientCerts.
func (s *Server) authenticate(r *http.Request) (principal, *authError) {
	now := s.cfg.Now()
	authz := r.Header.Get("Authorization")
	xkey := r.Header.Get("X-API-Key")
	if authz != "" && xkey != "" {
		return principal{}, &authError{status: http.StatusBadRequest, detail: "both Authorization and X-API-Key are set; send one credential"}
	}
	key := xkey
	if authz != "" {
		scheme, cred, _ := strings.Cut(authz, " ")
		cred = strings.TrimSpace(cred)
		switch {
		case strings.EqualFold(scheme, "ApiKey"):
			key = cred
		case strings.EqualFold(scheme, "Bearer"):
			if s.jwt == nil {
				return principal{}, &authError{status: http.StatusUnauthorized, detail: "bearer tokens are not accepted here; send an API key"}
			}
			p, err := s.jwt.verify(r.Context(), cred)
			if err != nil {
				s.log.InfoContext(r.Context(), "api: bearer token refused", "error", err)
				return principal{}, &authError{status: http.StatusUnauthorized, detail: "the bearer token is invalid: " + tokenReason(err), bearerError: "invalid_token"}
			}
			return p, nil
		default:
			return principal{}, &authError{status: http.StatusUnauthorized, detail: fmt.Sprintf("Authorization scheme %q is not supported; use ApiKey or Bearer", scheme)}
		}
	}
	if key != "" {
		if s.cfg.Keys == nil {
			return principal{}, &authError{status: http.StatusUnauthorized, detail: "API keys are not accepted here; send a bearer token"}
		}
		p, err := s.cfg.Keys.authenticate(key, now)
		switch {
		case errors.Is(err, ErrKeyExpired):
			return principal{}, &authError{status: http.StatusUnauthorized, detail: "the API key has expired; ask for a new one"}
		case err != nil:
			return principal{}, &authError{status: http.StatusUnauthorized, detail: "the API key is not valid"}
		}
		return p, nil
	}
	if cn := ClientCertIdentity(r); cn != "" {
		if g, ok := s.cfg.ClientCerts[cn]; ok {
			return principal{id: "cert:" + cn, tenant: g.Tenant, scopes: g.Scopes}, nil
		}
	}
	return principal{}, &authError{status: http.StatusUnauthorized, detail: "credentials are missing; send Authorization: ApiKey <key>, X-API-Key: <key> or Authorization: Bearer <token>"}
}

// tokenReason says in a few words why a token was refused, without
// echoing its content.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "it has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "it is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the signature cannot be verified"
	default:
		return "it is malformed or incomplete"
	}
}

func (s *Server) postRecords(w http.ResponseWriter, r *http.Request) {
	// Every answer names the request; published records carry it as their
	// correlation ID.
	rid := requestID(r.Header.Get("X-Request-ID"))
	w.Header().Set("X-Request-ID", rid)
	r = r.WithContext(hub.WithCorrelationID(r.Context(), rid))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.refuse(w, r, newProblem(http.StatusMethodNotAllowed, ProblemMethod, r.Method+" is not allowed on /v1/records; use POST"), nil)
		return
	}
	p, ok := s.admit(w, r, []string{ScopeWrite})
	if !ok {
		return
	}
	media, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8") {
		err = errors.New("charset")
	}
	if err != nil || (media != MediaJSON && media != MediaNDJSON) {
		w.Header().Set("Accept-Post", MediaJSON+", "+MediaNDJSON)
		s.refuse(w, r, newProblem(http.StatusUnsupportedMediaType, ProblemMediaType, fmt.Sprintf("Content-Type %q is not supported; send %s (one record) or %s (one record per line), in UTF-8", r.Header.Get("Content-Type"), MediaJSON, MediaNDJSON)), &p)
		return
	}
	idem, ok := idempotencyKey(r.Header)
	if !ok {
		s.refuse(w, r, newProblem(http.StatusBadRequest, ProblemMalformed, fmt.Sprintf("Idempotency-Key must be 1 to %d visible ASCII characters", maxIdempotencyKeyLength)), &p)
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.refuseDecode(w, r, tooLarge(s.cfg.MaxBodyBytes), &p)
		return
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	var (
		recs  []Record
		keys  []string
		derr  *decodeError
		lines []int
	)
	if media == MediaJSON {
		var rec Record
		if rec, derr = decodeOne(body, 0); derr == nil {
			if errs := rec.validate(0, nil); len(errs) > 0 {
				derr = invalid(errs)
			}
		}
		recs = []Record{rec}
		lines = []int{0}
	} else {
		recs, lines, derr = decodeNDJSON(body, s.cfg.MaxBodyBytes, s.cfg.MaxBatch)
	}
	if derr != nil {
		s.refuseDecode(w, r, derr, &p)
		return
	}
	// Keys are scoped by the caller's tenant, so two tenants never dedupe
	// each other's records. Without an Idempotency-Key, a record's key
	// holds a hash of its content: an exact repeat is a duplicate, while an
	// updated record (the next harvest of a changed source) has a new key
	// and is indexed again.
	scope := p.Tenant()
	if idem != "" {
		if !s.requests.remember(scope+"/"+idem, recordsHash(recs), s.cfg.Now()) {
			s.refuse(w, r, newProblem(http.StatusConflict, ProblemIdempotencyReuse, "this Idempotency-Key was already used with a different body; use a new key for a different request"), &p)
			return
		}
	}
	for i, rec := range recs {
		switch {
		case idem == "":
			keys = append(keys, scope+"/"+rec.Source+":"+rec.ID+"#"+rec.hash())
		case media == MediaJSON:
			keys = append(keys, scope+"/"+idem)
		default:
			keys = append(keys, scope+"/"+idem+":"+strconv.Itoa(lines[i]))
		}
	}
	s.publish(w, r, p, recs, keys)
}

// requestID returns the client's X-Request-ID when it is 1 to 128 visible
// ASCII characters, else a new UUID.
func requestID(v string) string {
	if v == "" || len(v) > 128 {
		return strings.TrimPrefix(newInstance(), "urn:uuid:")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return strings.TrimPrefix(newInstance(), "urn:uuid:")
		}
	}
	return v
}

// idempotencyKey reads the Idempotency-Key header: a token or, as the IETF
// draft writes it, a quoted string. ok is false for an invalid one.
func idempotencyKey(h http.Header) (string, bool) {
	vals := h.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", true
	}
	if len(vals) > 1 {
		return "", false
	}
	v := strings.TrimSpace(vals[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || len(v) > maxIdempotencyKeyLength {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return "", false
		}
	}
	return v, true
}

// publish sends every record to the hub, in order, and answers 202 once
// all are accepted, or 503 at the first failure.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, p principal, recs []Record, keys []string) {
	// A client that goes away must not cut a batch in half.
	ctx := context.WithoutCancel(r.Context())
	now := s.cfg.Now().UTC()
	msgs := make([]records.RecordIngested, len(recs))
	ids := make([]string, len(recs))
	for i, rec := range recs {
		msgs[i] = records.RecordIngested{
			ID: rec.ID, Source: rec.Source, Title: rec.Title, Body: rec.Body, Tags: rec.Tags, URL: rec.URL,
			IngestedAt: now, Tenant: p.Tenant(),
		}
		ids[i] = rec.ID
	}
	// One broker call for the whole batch: on RabbitMQ its confirms are
	// awaited together, not one round trip per record.
	if err := hub.PublishBatch(ctx, s.cfg.Hub, records.TopicIngested, msgs, hub.WithKeyFunc(func(i int) string { return keys[i] })); err != nil {
		s.log.ErrorContext(r.Context(), "api: publishing records failed", "principal", p.id, "records", len(recs), "error", err)
		w.Header().Set("Retry-After", "1")
		detail := "the records could not be queued; retry the same request (with the same Idempotency-Key): records already queued are not processed twice"
		s.refuse(w, r, newProblem(http.StatusServiceUnavailable, ProblemUnavailable, detail), &p)
		return
	}
	s.log.InfoContext(r.Context(), "api: records accepted", "request_id", hub.CorrelationID(ctx), "principal", p.id, "tenant", p.Tenant(), "count", len(recs))
	body, _ := json.Marshal(Accepted{Accepted: len(ids), IDs: ids})
	w.Header().Set("Content-Type", MediaJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(body)
}

// Accepted is the body of a 202 answer.
type Accepted struct {
	// Accepted is the number of records queued.
	Accepted int `json:"accepted"`
	// IDs are their IDs, in request order.
	IDs []string `json:"ids"`
}

func (s *Server) refuseDecode(w http.ResponseWriter, r *http.Request, d *decodeError, p *principal) {
	slug := ProblemMalformed
	switch d.status {
	case http.StatusUnprocessableEntity:
		slug = ProblemValidation
	case http.StatusRequestEntityTooLarge:
		slug = ProblemTooLarge
		// The rest of the body is not read: close rather than drain it.
		w.Header().Set("Connection", "close")
	}
	pr := newProblem(d.status, slug, d.detail)
	pr.Errors, pr.ErrorCount = d.errs, d.count
	s.refuse(w, r, pr, p)
}

// refuse logs and writes a problem.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, pr *Problem, p *principal) {
	pr.Instance = newInstance()
	attrs := []any{"status", pr.Status, "instance", pr.Instance, "request_id", hub.CorrelationID(r.Context()), "method", r.Method, "path", r.URL.Path, "detail", pr.Detail}
	if p != nil {
		attrs = append(attrs, "principal", p.id)
	}
	s.log.InfoContext(r.Context(), "api: request refused", attrs...)
	writeProblem(w, pr)
}
