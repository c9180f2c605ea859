// Package redisstore is an [idempotency.Store] on Redis, for a fleet of
// workers that share one Redis (standalone, Sentinel or Cluster, through
// go-redis's [redis.UniversalClient]).
//
// # Data model
//
// Each key is one Redis string, named Config.Prefix + the normalised key,
// whose value is "L:<token>" while a claim holds it and "C:<token>" once it
// is completed. Leases and retention are the key's TTL, kept by the Redis
// server's clock, so worker clocks never matter and expired keys vanish on
// their own: nothing needs cleaning up.
//
// # Round trips
//
// Claim, Extend, Complete and Release are one round trip each. Claim is a
// small Lua script that does SET NX PX and, when the key is taken, answers
// Completed or Busy (with the remaining lease) in the same call; Extend and
// Release are compare-and-set scripts on the token; Complete is a plain SET
// PX. Scripts are sent by EVALSHA and loaded with EVAL only when the server
// does not know them yet (after a restart or SCRIPT FLUSH). Every script
// touches a single key, so the store works on Redis Cluster.
//
// # Failures
//
// When Redis cannot be reached every method returns a wrapped error; Claim
// never reports Acquired without the server's word. go-redis reconnects by
// itself after a connection is dropped or the server restarts, and retries
// a command whose connection broke; the scripts are written so that such a
// retry cannot turn the caller's own claim into Busy.
//
// Redis persistence decides what survives a Redis restart: without AOF or
// RDB, completed keys are forgotten and a redelivered message runs again.
// Use pgstore when completions must be durable or committed together with
// the handler's own writes.
package redisstore
