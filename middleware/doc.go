// Package middleware holds Watermill handler middleware for hub handlers:
// Recover, Timeout, CorrelationID, Logging, RateLimit and CircuitBreaker, and
// the AES-256-GCM Keyring that encrypts payloads at rest.
//
// Every middleware is a plain message.HandlerMiddleware, usable in
// hub.Config.Middleware, in hub.WithMiddleware, and in a plain Watermill
// router. In a hub they wrap each handler attempt (not the whole delivery):
// the hub's own steps (idempotency claim, decoding, retries, dead-lettering)
// sit outside them, so an error a middleware returns is retried or
// dead-lettered like a handler error, and a middleware sees the message
// context the hub gives the attempt (cancelled on Close).
//
// Order matters: middleware listed first is outermost. A sensible order is
//
//	hub.Config{Middleware: []message.HandlerMiddleware{
//		middleware.Recover(),
//		middleware.CorrelationID(),
//		middleware.Logging(logger),
//		middleware.CircuitBreaker(gobreaker.Settings{Name: "search"}),
//		middleware.RateLimit(50, 10),
//		middleware.Timeout(10 * time.Second),
//	}}
//
// so that the breaker sees timeouts as failures and the rate limiter's wait
// does not eat into the attempt's timeout.
//
// Encryption is not middleware: set a Keyring as hub.Config.Encryption and
// the hub seals every payload before it reaches the broker (and the dead
// letter topic) and opens it before decoding.
package middleware
