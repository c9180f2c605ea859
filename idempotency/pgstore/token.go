package pgstore

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

var (
	tokenPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
		return hex.EncodeToString(b[:]) + "-"
	}()
	tokenSeq atomic.Uint64
)

// newToken returns a token unique across processes: a random per-process
// prefix and a counter.
func newToken() string {
	var buf [32]byte
	b := append(buf[:0], tokenPrefix...)
	b = strconv.AppendUint(b, tokenSeq.Add(1), 36)
	return string(b)
}
