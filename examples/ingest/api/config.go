package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/harvesthub/hub"
)

// Scopes. ScopeWrite posts records (and reads the tenant's own);
// ScopeRead searches and reads job status only.
const (
	ScopeWrite = "records:write"
	ScopeRead  = "records:read"
)

// Defaults of Config and JWTConfig fields left zero.
const (
	RateLimitDefault         = rate.Limit(50)
	BurstDefault             = 100
	RateLimitKeysDefault     = 10000
	MaxBodyBytesDefault      = 1 << 20
	MaxBatchDefault          = 1000
	LeewayDefault            = 30 * time.Second
	TenantClaimDefault       = "tenant"
	RefreshIntervalDefault   = 15 * time.Minute
	RefreshUnknownKIDDefault = time.Minute
	JWKSTimeoutDefault       = 10 * time.Second
	IdempotencyKeysDefault   = 50000
	IdempotencyTTLDefault    = 24 * time.Hour

	maxIDLength             = 256
	maxIdempotencyKeyLength = 255
	maxJWKSBytes            = 1 << 20
)

// AlgorithmsDefault are the JWT signature algorithms accepted when
// JWTConfig.Algorithms is empty: asymmetric ones only, so a token signed
// with HMAC using the public key as secret is refused.
var AlgorithmsDefault = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// ErrInvalidConfig wraps every configuration error returned by New.
var ErrInvalidConfig = errors.New("api: invalid configuration")

// Config configures a Server. At least one kind of credential (Keys,
// JWKSURL or ClientCerts) must be enabled.
type Config struct {
	// Hub publishes every accepted record, with hub.Publish, to
	// records.TopicIngested. Defaults to nil: the Server serves no
	// POST /v1/records and only authenticates, for Require (the index and
	// dispatch services guard their read endpoints so).
	Hub *hub.Hub
	// Keys holds the API keys clients send as "Authorization: ApiKey <key>"
	// or "X-API-Key: <key>". Defaults to nil: API keys are refused.
	Keys *KeyStore
	// JWKSURL is the JSON Web Key Set of the OAuth 2.0 authorization server
	// whose bearer JWTs ("Authorization: Bearer <jwt>") are accepted. The
	// set is fetched by New (which fails if it cannot be) and refreshed in
	// the background until Close. Defaults to "": bearer tokens are refused.
	JWKSURL string
	// JWT says how bearer tokens are checked. Issuer and Audience are
	// required when JWKSURL is set.
	JWT JWTConfig
	// ClientCerts maps the subject common name of a verified TLS client
	// certificate (see ClientCertIdentity) to what it may do. It applies
	// only when the http.Server's TLS configuration verifies client
	// certificates (broker.TLSFiles.ServerConfig does). Defaults to nil:
	// client certificates are not credentials.
	ClientCerts map[string]Grant
	// RateLimit is the sustained number of requests per second each
	// credential (API key ID, JWT subject, certificate name) may make.
	// Defaults to 50. rate.Inf disables rate limiting.
	RateLimit rate.Limit
	// Burst is how many requests a credential may make at once above
	// RateLimit. Defaults to 100.
	Burst int
	// RateLimitKeys bounds how many per-credential limiters are kept. Idle
	// ones (whose bucket has refilled) are dropped first; when every kept
	// limiter is busy, the least recently used one is dropped. Defaults to
	// 10000.
	RateLimitKeys int
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	// Defaults to 1 MiB.
	MaxBodyBytes int64
	// MaxBatch bounds the records in one NDJSON request; more is answered
	// 413. Defaults to 1000.
	MaxBatch int
	// IdempotencyKeys bounds how many Idempotency-Key values (with the
	// hash of their request) are remembered to answer 409 to a key reused
	// with another body. Defaults to 50000, least recently used forgotten
	// first.
	IdempotencyKeys int
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	// Defaults to 24h.
	IdempotencyTTL time.Duration
	// Logger receives one line per refused or failed request and JWKS
	// refresh errors. Defaults to the hub's logger.
	Logger *slog.Logger
	// Now is the clock for key expiry, JWT validity, rate limits and
	// RecordIngested.IngestedAt. Defaults to time.Now.
	Now func() time.Time
}

// JWTConfig says how bearer tokens are verified.
type JWTConfig struct {
	// Issuer must equal the token's "iss" claim. Required with JWKSURL.
	Issuer string
	// Audience must be one of the token's "aud" values. Required with
	// JWKSURL.
	Audience string
	// RequiredScope must be one of the token's scopes, read from "scope"
	// (space-separated string) or "scp" (array or space-separated string).
	// Defaults to ScopeWrite ("records:write").
	RequiredScope string
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	// Defaults to 30s.
	Leeway time.Duration
	// TenantClaim names the string claim copied into
	// RecordIngested.Tenant. Defaults to "tenant"; a token without it
	// publishes records without a tenant.
	TenantClaim string
	// Algorithms are the accepted "alg" values. Defaults to
	// AlgorithmsDefault (asymmetric algorithms only).
	Algorithms []string
	// RefreshInterval is how often the JWKS is fetched again, so rotated
	// and revoked keys take effect. Defaults to 15m.
	RefreshInterval time.Duration
	// RefreshUnknownKID is the least time between two extra fetches caused
	// by a token signed with a key ID the cached set lacks (a key rotated in
	// at the issuer). Defaults to 1m.
	RefreshUnknownKID time.Duration
	// HTTPClient fetches the JWKS. Defaults to a client with a 10s timeout.
	HTTPClient *http.Client
}

// Grant is what a client certificate may do.
type Grant struct {
	// Scopes granted to the certificate; ScopeWrite is needed to post.
	Scopes []string
	// Tenant is copied into RecordIngested.Tenant.
	Tenant string
}

func (c Config) withDefaults() Config {
	if c.RateLimit == 0 {
		c.RateLimit = RateLimitDefault
	}
	if c.Burst == 0 {
		c.Burst = BurstDefault
	}
	if c.RateLimitKeys == 0 {
		c.RateLimitKeys = RateLimitKeysDefault
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = MaxBodyBytesDefault
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = MaxBatchDefault
	}
	if c.IdempotencyKeys == 0 {
		c.IdempotencyKeys = IdempotencyKeysDefault
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = IdempotencyTTLDefault
	}
	if c.Logger == nil && c.Hub != nil {
		c.Logger = c.Hub.Logger()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	j := &c.JWT
	if j.RequiredScope == "" {
		j.RequiredScope = ScopeWrite
	}
	if j.Leeway == 0 {
		j.Leeway = LeewayDefault
	}
	if j.TenantClaim == "" {
		j.TenantClaim = TenantClaimDefault
	}
	if len(j.Algorithms) == 0 {
		j.Algorithms = AlgorithmsDefault
	}
	if j.RefreshInterval == 0 {
		j.RefreshInterval = RefreshIntervalDefault
	}
	if j.RefreshUnknownKID == 0 {
		j.RefreshUnknownKID = RefreshUnknownKIDDefault
	}
	if j.HTTPClient == nil {
		j.HTTPClient = &http.Client{Timeout: JWKSTimeoutDefault}
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Keys == nil && c.JWKSURL == "" && len(c.ClientCerts) == 0:
		return errors.New("no credentials are enabled; set Keys (API keys), JWKSURL (OAuth 2.0 JWTs) or ClientCerts (mTLS)")
	case c.RateLimit < 0:
		return fmt.Errorf("config RateLimit is %v; set requests per second per credential, rate.Inf for no limit, or 0 for %v", c.RateLimit, RateLimitDefault)
	case c.Burst < 0 || (c.Burst == 0 && c.RateLimit != rate.Inf):
		return fmt.Errorf("config Burst is %d; set a positive number of requests, or 0 for %d", c.Burst, BurstDefault)
	case c.RateLimitKeys < 0:
		return fmt.Errorf("config RateLimitKeys is %d; set a positive number of limiters, or 0 for %d", c.RateLimitKeys, RateLimitKeysDefault)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("config MaxBodyBytes is %d; set a positive size in bytes, or 0 for %d", c.MaxBodyBytes, MaxBodyBytesDefault)
	case c.IdempotencyKeys < 0 || c.IdempotencyTTL < 0:
		return fmt.Errorf("config IdempotencyKeys %d and IdempotencyTTL %v must not be negative; use 0 for %d and %v", c.IdempotencyKeys, c.IdempotencyTTL, IdempotencyKeysDefault, IdempotencyTTLDefault)
	case c.MaxBatch < 0:
		return fmt.Errorf("config MaxBatch is %d; set a positive number of records, or 0 for %d", c.MaxBatch, MaxBatchDefault)
	}
	if _, ok := c.ClientCerts[""]; ok {
		return errors.New("config ClientCerts has an empty common name; key it by the certificate subject CN")
	}
	if c.JWKSURL == "" {
		return nil
	}
	u, err := url.Parse(c.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("config JWKSURL %q is not an absolute https URL; set the authorization server's jwks_uri", c.JWKSURL)
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		// Keys fetched in the clear can be swapped on the way: whoever
		// does so mints tokens this API accepts.
		return fmt.Errorf("config JWKSURL %q is plain http; the key set must come over https (http only for a loopback address in tests)", c.JWKSURL)
	}
	j := c.JWT
	switch {
	case j.Issuer == "":
		return errors.New("config JWT.Issuer is empty; set the authorization server's issuer (the tokens' iss claim)")
	case j.Audience == "":
		return errors.New("config JWT.Audience is empty; set this API's audience (the tokens' aud claim)")
	case j.Leeway < 0:
		return fmt.Errorf("config JWT.Leeway is %v; set a positive clock skew, or 0 for %v", j.Leeway, LeewayDefault)
	case j.RefreshInterval < 0:
		return fmt.Errorf("config JWT.RefreshInterval is %v; set a positive duration, or 0 for %v", j.RefreshInterval, RefreshIntervalDefault)
	case j.RefreshUnknownKID < 0:
		return fmt.Errorf("config JWT.RefreshUnknownKID is %v; set a positive duration, or 0 for %v", j.RefreshUnknownKID, RefreshUnknownKIDDefault)
	}
	for _, a := range j.Algorithms {
		if strings.HasPrefix(a, "HS") || a == "none" {
			return fmt.Errorf("config JWT.Algorithms holds %q; only asymmetric algorithms verify against a JWKS, leave it empty for %v", a, AlgorithmsDefault)
		}
	}
	return nil
}

// loopback reports whether host is localhost or a loopback IP address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
