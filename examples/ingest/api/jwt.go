package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Errors of bearer token authentication. Both are answered 401.
var (
	// ErrTokenInvalid wraps every reason a token is refused: bad signature,
	// unknown key, wrong issuer or audience, expired, not yet valid.
	ErrTokenInvalid = errors.New("api: invalid bearer token")
	// ErrJWKS is returned by New when the JWKS cannot be fetched or parsed.
	ErrJWKS = errors.New("api: JWKS unavailable")
)

// jwtVerifier checks bearer tokens against a JWKS it keeps fresh. It owns
// one goroutine, the periodic refresh, stopped and joined by close.
//
// It does not use keyfunc.NewDefault: that refresh goroutine cannot be
// joined, only keys it has seen are ever added (a key removed from the set
// stays trusted until restart), and a token with an unknown key ID can hold
// its request for up to a minute waiting for a refresh. Here each fetch
// replaces the whole set (keyfunc.NewJWKSetJSON), and unknown key IDs cause
// at most one extra fetch per JWTConfig.RefreshUnknownKID, never a wait.
type jwtVerifier struct {
	url    string
	cfg    JWTConfig
	now    func() time.Time
	log    *slog.Logger
	parser *jwt.Parser

	current   atomic.Pointer[keyfunc.Keyfunc]
	fetchMu   sync.Mutex // one fetch at a time
	unknown   *rate.Limiter
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func newJWTVerifier(url string, cfg JWTConfig, now func() time.Time, log *slog.Logger) (*jwtVerifier, error) {
	ctx, cancel := context.WithCancel(context.Background())
	v := &jwtVerifier{
		url: url, cfg: cfg, now: now, log: log,
		parser: jwt.NewParser(
			jwt.WithValidMethods(cfg.Algorithms),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(now),
		),
		unknown: rate.NewLimiter(rate.Every(cfg.RefreshUnknownKID), 1),
		ctx:     ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	// The first fetch counts against the unknown-key budget: a rotation
	// right after start waits for RefreshUnknownKID like any other.
	v.unknown.AllowN(now(), 1)
	fctx, fcancel := context.WithTimeout(ctx, JWKSTimeoutDefault)
	err := v.fetch(fctx)
	fcancel()
	if err != nil {
		cancel()
		return nil, err
	}
	go v.refreshLoop()
	return v, nil
}

func (v *jwtVerifier) refreshLoop() {
	defer close(v.done)
	t := time.NewTicker(v.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(v.ctx, JWKSTimeoutDefault)
			if err := v.fetch(ctx); err != nil && v.ctx.Err() == nil {
				v.log.Warn("api: JWKS refresh failed; keeping the previous keys", "url", v.url, "error", err)
			}
			cancel()
		}
	}
}

// fetch replaces the key set with the one at the URL. On error the
// previous set stays.
func (v *jwtVerifier) fetch(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrJWKS, v.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrJWKS, v.url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", ErrJWKS, v.url, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrJWKS, v.url, err)
	}
	if len(raw) > maxJWKSBytes {
		return fmt.Errorf("%w: %s is larger than %d bytes", ErrJWKS, v.url, maxJWKSBytes)
	}
	kf, err := keyfunc.NewJWKSetJSON(bytes.TrimSpace(raw))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrJWKS, v.url, err)
	}
	v.current.Store(&kf)
	return nil
}

// keyfunc returns the key for token, fetching the set again (rate
// limited) when the token names a key ID the set lacks.
func (v *jwtVerifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		key, err := (*v.current.Load()).KeyfuncCtx(ctx)(t)
		if !errors.Is(err, jwkset.ErrKeyNotFound) || !v.unknown.AllowN(v.now(), 1) {
			return key, err
		}
		fctx, cancel := context.WithTimeout(ctx, JWKSTimeoutDefault)
		defer cancel()
		if ferr := v.fetch(fctx); ferr != nil {
			v.log.Warn("api: JWKS refresh for an unknown key ID failed", "url", v.url, "error", ferr)
			return key, err
		}
		return (*v.current.Load()).KeyfuncCtx(ctx)(t)
	}
}

// verify parses and checks raw; it returns the principal of a valid token.
// Scopes are returned, not checked: a valid token without the scope is a
// 403, not a 401.
func (v *jwtVerifier) verify(ctx context.Context, raw string) (principal, error) {
	c := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, c, v.keyfunc(ctx)); err != nil {
		return principal{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	sub, _ := c.GetSubject()
	if sub == "" {
		return principal{}, fmt.Errorf("%w: no sub claim", ErrTokenInvalid)
	}
	var scopes []string
	if s, ok := c["scope"].(string); ok {
		scopes = strings.Fields(s)
	}
	// "scp" is an array (Okta) or a space-separated string (Azure AD).
	switch scp := c["scp"].(type) {
	case string:
		scopes = append(scopes, strings.Fields(scp)...)
	case []any:
		for _, s := range scp {
			if s, ok := s.(string); ok {
				scopes = append(scopes, s)
			}
		}
	}
	tenant, _ := c[v.cfg.TenantClaim].(string)
	return principal{id: "jwt:" + sub, tenant: tenant, scopes: scopes, bearer: true}, nil
}

func (v *jwtVerifier) close() {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
	})
}
