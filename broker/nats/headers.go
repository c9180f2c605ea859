package nats

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
)

// Headers the adapter writes besides the message's metadata. Metadata keys
// that would collide with them (any key starting with "Hub-Nats-" or
// "Nats-", in any case) travel encoded, like keys and values NATS headers
// cannot carry as they are.
const (
	// HeaderUUID carries the Watermill message UUID.
	HeaderUUID = "Hub-Nats-Uuid"
	// HeaderNotBefore is the time (RFC 3339, nanoseconds) before which a
	// delayed message is not delivered.
	HeaderNotBefore = "Hub-Nats-Not-Before"
	// HeaderEncoded carries the metadata pairs that are not valid header
	// lines: "k=v" pairs of base64url (no padding) key and value, joined by
	// ",".
	HeaderEncoded = "Hub-Nats-Meta"
)

var b64 = base64.RawURLEncoding

// forbiddenKeyChars are the printable ASCII characters nats.go refuses in
// a header key.
const forbiddenKeyChars = "\"()/,:;<=>?@[\\]{}"

// headerSafe reports whether metadata k: v survives as a NATS header line
// unchanged, for every client (ADR-4): k is printable ASCII without the
// characters nats.go refuses and is not reserved; v is printable ASCII
// (tabs inside allowed) without leading or trailing space or tab (trimmed
// on the wire).
func headerSafe(k, v string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < '!' || c > '~' || strings.IndexByte(forbiddenKeyChars, c) >= 0 {
			return false
		}
	}
	lk := strings.ToLower(k)
	if strings.HasPrefix(lk, "nats-") || strings.HasPrefix(lk, "hub-nats-") {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c > '~' {
			return false
		}
	}
	if v != "" && (isSpace(v[0]) || isSpace(v[len(v)-1])) {
		return false
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// encodeHeaders returns the headers carrying m's UUID and metadata, and
// notBefore when it is not zero.
func encodeHeaders(m *message.Message, notBefore time.Time) natsgo.Header {
	h := make(natsgo.Header, len(m.Metadata)+2)
	if m.UUID != "" {
		h[HeaderUUID] = []string{m.UUID}
	}
	if !notBefore.IsZero() {
		h[HeaderNotBefore] = []string{notBefore.UTC().Format(time.RFC3339Nano)}
	}
	var enc []string
	for k, v := range m.Metadata {
		if headerSafe(k, v) {
			h[k] = []string{v}
			continue
		}
		enc = append(enc, b64.EncodeToString([]byte(k))+"="+b64.EncodeToString([]byte(v)))
	}
	if len(enc) > 0 {
		slices.Sort(enc)
		h[HeaderEncoded] = []string{strings.Join(enc, ",")}
	}
	return h
}

// errBadHeaders is wrapped by decodeHeaders for headers no adapter wrote.
var errBadHeaders = errors.New("nats: malformed hub headers")

// decodeHeaders is the inverse of encodeHeaders. Headers of other writers
// (without Hub-Nats-Uuid) decode too: every header becomes metadata (its
// first value), and the UUID is empty.
func decodeHeaders(h natsgo.Header) (uuid string, md message.Metadata, notBefore time.Time, err error) {
	md = make(message.Metadata, len(h))
	for k, vs := range h {
		switch k {
		case HeaderUUID:
			if len(vs) > 0 {
				uuid = vs[0]
			}
			continue
		case HeaderNotBefore:
			if len(vs) > 0 {
				notBefore, err = time.Parse(time.RFC3339Nano, vs[0])
				if err != nil {
					return "", nil, time.Time{}, fmt.Errorf("%w: %s %q: %w", errBadHeaders, HeaderNotBefore, vs[0], err)
				}
			}
			continue
		case HeaderEncoded:
			for _, v := range vs {
				if err := decodePairs(v, md); err != nil {
					return "", nil, time.Time{}, err
				}
			}
			continue
		}
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "nats-") {
			continue // the server's and client's own headers (Nats-Msg-Id, ...)
		}
		if len(vs) > 0 {
			md[k] = vs[0]
		}
	}
	return uuid, md, notBefore, nil
}

func decodePairs(s string, md message.Metadata) error {
	if s == "" {
		return nil
	}
	for pair := range strings.SplitSeq(s, ",") {
		ek, ev, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("%w: %s pair %q has no '='", errBadHeaders, HeaderEncoded, pair)
		}
		k, err := b64.DecodeString(ek)
		if err != nil {
			return fmt.Errorf("%w: %s key %q: %w", errBadHeaders, HeaderEncoded, ek, err)
		}
		v, err := b64.DecodeString(ev)
		if err != nil {
			return fmt.Errorf("%w: %s value of %q: %w", errBadHeaders, HeaderEncoded, k, err)
		}
		md[string(k)] = string(v)
	}
	return nil
}

// msgID is the Nats-Msg-Id of m: its UUID and a digest of its metadata and
// payload. Publishing the same message again (a retry after a lost publish
// ack) is stored once within the stream's duplicate window; a delayed retry
// or a replay of the same message carries different metadata (attempt,
// target group, failure times) and is stored again. A message without a
// UUID gets no Nats-Msg-Id: it is never deduplicated against another.
func msgID(m *message.Message) string {
	if m.UUID == "" {
		return ""
	}
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	d := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(d, "%d:%s%d:%s", len(k), k, len(m.Metadata[k]), m.Metadata[k])
	}
	fmt.Fprintf(d, "%d:", len(m.Payload))
	d.Write(m.Payload)
	return m.UUID + "-" + hex.EncodeToString(d.Sum(nil)[:12])
}
