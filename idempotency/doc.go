// Package idempotency turns at-least-once delivery into effectively-once
// handling: before a handler runs, the hub claims the message's key with a
// lease; when the handler succeeds it completes the key, and a completed key
// is never handled again while it is retained.
//
// [Store] is the contract for implementers. [MemoryStore] protects one
// process; idempotency/redisstore and idempotency/pgstore protect a fleet.
// Every store must pass idempotencytest.Run.
//
// # Lifecycle of a key
//
//	Claim(key, lease)          -> Acquired (token) | Busy (LeaseUntil) | Completed
//	Extend(key, token, lease)  while in-process retries run, or ErrLeaseLost
//	Complete(key, token, ret)  on success: Completed for ret, even if the lease was lost
//	Release(key, token)        on failure: claimable again at once
//
// A lease that ends without Complete or Release (the worker crashed) makes
// the key claimable again, so the message is handled by the next delivery.
//
// # Keys
//
// Keys longer than [MaxKeyLen] bytes are stored as their SHA-256 ([NormalizeKey]),
// so a key of any length costs a fixed amount of storage.
package idempotency
