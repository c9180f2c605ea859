// Package pgstore is an [idempotency.Store] on PostgreSQL, through a pgx
// connection pool ([pgxpool.Pool]). Its distinctive feature is
// [Store.CompleteClaimTx] (and [Store.CompleteTx] underneath): a hub
// handler marks its key done in the same transaction as its own writes
// (the transactional inbox pattern), so the two commit or roll back
// together. With the outbox module staging the handler's outputs in that
// transaction too, a PostgreSQL-backed handler is exactly-once.
//
// # Schema
//
// One table (Config.Table, by default hub_idempotency) with a row per key:
//
//	key        bytea PRIMARY KEY  -- the normalised key, any bytes
//	token      text               -- the holder's claim token
//	completed  boolean            -- false: leased; true: done
//	expires_at timestamptz        -- end of the lease, or of the retention
//
// and an index on expires_at. [Store.Migrate] creates them; call it once at
// startup (it is idempotent and safe to run from many processes at once).
// New never touches the database.
//
// # Time
//
// Leases and retention are compared with the database clock (now()), never
// with the workers' clocks. Within a transaction now() is the time the
// transaction started, so CompleteTx's retention counts from then.
//
// # Round trips
//
// Claim is one statement (INSERT .. ON CONFLICT DO UPDATE .. WHERE the row
// has expired, RETURNING, with the current state read in the same
// statement), as are Extend (UPDATE), Complete (upsert) and Release (DELETE).
//
// # Cleanup
//
// Expired rows never change an answer (Claim takes them over), but they take
// space. New starts a goroutine that deletes them every
// Config.CleanupInterval in batches of Config.CleanupBatch rows, skipping
// rows other transactions hold, so several workers can clean one table
// without waiting for each other. Close stops it. [Store.Cleanup] runs one
// pass by hand.
package pgstore
