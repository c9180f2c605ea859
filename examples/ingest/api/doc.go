// Package api is the HTTP API of the ingest service: clients post records,
// the server authenticates them, validates every record and publishes each
// one as a records.RecordIngested to records.TopicIngested with hub.Publish.
//
//	keys := api.NewKeyStore()
//	devKey, _ := keys.Generate("dev", []string{api.ScopeWrite}, 0, "acme")
//	srv, err := api.New(api.Config{Hub: h, Keys: keys})
//	...
//	defer srv.Close()
//	http.ListenAndServe(":8080", srv.Handler())
//
// # Route
//
// POST /v1/records takes either
//
//   - Content-Type: application/json, one record object, or
//   - Content-Type: application/x-ndjson, one record object per line (blank
//     lines are skipped; at most Config.MaxBatch records).
//
// A record has the fields of [Record]: id (required, at most 256
// characters), source (required, without ':'), title (required), body,
// tags (array of strings) and url (an absolute http or https URL). Unknown
// fields are refused (json.Decoder.DisallowUnknownFields), so a misspelt
// field is an error, not silently dropped data.
//
// The whole body is validated before anything is published: one invalid
// line refuses the request and publishes nothing. Once every record is
// published (hub.Publish returned nil), the answer is 202 Accepted with
// [Accepted]: {"accepted": n, "ids": [...]}.
//
// # Idempotency
//
// Each record is published with an idempotency key (hub.WithKey), so the
// hub's handlers process it once however often it is posted:
//
//   - with an Idempotency-Key header (1 to 255 visible ASCII characters,
//     optionally in double quotes as the IETF draft writes it): the header
//     for application/json, header + ":" + line number for NDJSON;
//   - without one: "<source>:<id>#<content hash>" (hence no ':' in
//     source): the same record posted again is a duplicate, the record
//     posted with changed content (a re-harvest of an updated source) is
//     new and indexed again;
//
// each prefixed with "<tenant>/", where the tenant is the credential's, or
// the credential itself ("key:<id>", "jwt:<sub>", "cert:<cn>") when it has
// none.
//
// A repeated request is accepted again (202) and published again; the hub
// drops the duplicate downstream, within its idempotency retention
// (hub.Config.Retention, 24h by default). An Idempotency-Key reused with a
// different body (other records, or the same records changed) is refused
// with 409: the server remembers each key's request hash
// (Config.IdempotencyKeys, Config.IdempotencyTTL), per process, so
// replicas need sticky routing by credential or a shared table for the
// same guarantee. Because keys are scoped, two tenants that send the same
// Idempotency-Key (or the same source and id) never drop each other's
// records.
//
// # Authentication
//
// The first credential found is used (sending both Authorization and
// X-API-Key is a 400):
//
//   - "Authorization: ApiKey hh_<id>_<secret>" or "X-API-Key:
//     hh_<id>_<secret>": a key of Config.Keys ([KeyStore]), stored as a
//     SHA-256 hash, compared in constant time, with scopes and an expiry;
//   - "Authorization: Bearer <jwt>": an OAuth 2.0 access token (JWT) signed
//     by a key of the JWKS at Config.JWKSURL, with JWTConfig.Issuer as iss,
//     JWTConfig.Audience among aud, a valid exp/nbf/iat (JWTConfig.Leeway
//     of skew), a sub, and JWTConfig.RequiredScope in "scope" (space
//     separated) or "scp" (array or string);
//   - a TLS client certificate verified by the server's TLS configuration,
//     whose subject CN is a key of Config.ClientCerts (see
//     [ClientCertIdentity]).
//
// API keys and client certificates need the scope [ScopeWrite]
// ("records:write").
//
// # Request IDs
//
// Every answer carries X-Request-ID: the client's (1 to 128 visible ASCII
// characters) or a new UUID. Published records carry it as their
// correlation ID (hub.WithCorrelationID), and the server's log lines name
// it.
//
// # Rate limits
//
// Each credential (API key ID, JWT subject, certificate CN) has a token
// bucket of Config.RateLimit requests per second and Config.Burst; a
// request costs one token whatever the number of records in it. Past it,
// the answer is 429 with Retry-After (whole seconds until a token is
// free). Limiters are kept in memory, per server replica, at most
// Config.RateLimitKeys of them.
//
// # Errors
//
// Every refusal is an RFC 9457 problem (Content-Type:
// application/problem+json, see [Problem]) with type, title, status,
// detail, instance (a urn:uuid logged with the refusal) and, for record
// errors, "errors": [{"line", "field", "detail"}]. Nothing is published when
// a request is refused. Checks run in this order:
//
//	405 method other than POST (with Allow: POST); 404 other paths
//	401 missing, unknown or expired API key; missing, badly signed, expired,
//	    not yet valid token, or wrong issuer/audience (with WWW-Authenticate)
//	400 both Authorization and X-API-Key
//	403 valid credential without the scope
//	429 rate limited (with Retry-After)
//	415 Content-Type other than application/json or application/x-ndjson
//	    (or a charset other than UTF-8), with Accept-Post
//	400 invalid Idempotency-Key header
//	409 Idempotency-Key already used with a different body
//	413 body over Config.MaxBodyBytes, or NDJSON over Config.MaxBatch
//	    non-blank lines (records or not)
//	400 not JSON: syntax error, empty body, truncated JSON, two values in
//	    an application/json body or on one line (the line is named)
//	422 JSON that is not a valid record: missing or blank required field,
//	    a field or word over its limit (MaxTitleLength, MaxWordLength, ...),
//	    id too long, ':' in source, bad url, a field of the wrong type
//	    (such as "id": 5 or "tags": "x"), an unknown field, a body that is
//	    not an object, an NDJSON body with no records; the problem lists
//	    the first MaxReportedErrors errors and counts them (error_count)
//	503 the hub could not publish (with Retry-After: 1)
//
// Wrong types and unknown fields are 422, not 400: the body is well-formed
// JSON, and 422 lets a client handle every record-level mistake with one
// code and one "errors" list naming the line and field. 400 is kept for
// bodies that are not JSON at all. A 503 in an NDJSON batch may come after
// some records were published: retry the same request with the same
// Idempotency-Key (or none, relying on the content-hashed keys), and the hub
// processes each record once.
//
// # What the server does not do
//
// The http.Server (its timeouts, TLS configuration and client CAs) belongs
// to the caller (examples/internal/platform sets timeouts, a header limit
// and a connection limit); so do limits on unauthenticated traffic (by IP, at the
// proxy), since rate limits here apply per credential.
package api
