package nats

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

func TestToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"records", "records"},
		{"demo.records", "demo_records"},
		{"demo.records.dlq", "demo_records_dlq"},
		{"A-b-9", "A-b-9"},
	} {
		require.Equal(t, tc.want, token(tc.in), tc.in)
	}
	// Lossy names get a hash: never the same token for different names.
	hashed := []string{"orders_v2", "café", "a b", "a*b", "a>b", "", strings.Repeat("x", 500), strings.Repeat("x", 501)}
	seen := map[string]string{}
	for _, in := range append(hashed, "orders.v2", "a_b") {
		tok := token(in)
		require.Regexp(t, `^[A-Za-z0-9_-]+$`, tok, in)
		require.LessOrEqual(t, len(tok), maxNameLen)
		prev, dup := seen[tok]
		require.False(t, dup, "%q and %q both map to %q", prev, in, tok)
		seen[tok] = in
	}
	for _, in := range hashed {
		require.Regexp(t, `_[0-9a-f]{16}$`, token(in), in)
	}
}

func TestNamesTarget(t *testing.T) {
	n := names{stream: "hub_t", subject: "hub.hub_t"}
	require.Equal(t, "", n.target("hub.hub_t"))
	require.Equal(t, "worker", n.target(n.groupSubject("worker")))
}

// roundTrip encodes md into headers, writes them as nats.go would, parses
// them back as a subscriber does, and decodes.
func roundTrip(t *testing.T, uuid string, md message.Metadata, notBefore time.Time) (string, message.Metadata, time.Time) {
	t.Helper()
	m := message.NewMessage(uuid, nil)
	m.Metadata = md
	h := encodeHeaders(m, notBefore)
	for k := range h {
		require.True(t, k != "" && !strings.ContainsAny(k, forbiddenKeyChars+" \r\n"), "header key %q", k)
	}
	raw := "NATS/1.0\r\n"
	for k, vs := range h {
		for _, v := range vs {
			require.NotContains(t, v, "\r")
			require.NotContains(t, v, "\n")
			raw += k + ": " + v + "\r\n"
		}
	}
	parsed, err := natsgo.DecodeHeadersMsg([]byte(raw + "\r\n"))
	require.NoError(t, err)
	gotUUID, got, nb, err := decodeHeaders(parsed)
	require.NoError(t, err)
	return gotUUID, got, nb
}

func TestHeadersRoundTrip(t *testing.T) {
	nb := time.Date(2026, 12, 2, 4, 0, 0, 123456789, time.UTC)
	md := message.Metadata{"hub-key": "k", "Nats-Msg-Id": "x", "a:b": "c", " lead": " v ", "nl": "a\nb", "": "empty key", "ü": "ß"}
	uuid, got, gotNB := roundTrip(t, "id-1", md, nb)
	require.Equal(t, "id-1", uuid)
	require.Equal(t, md, got)
	require.True(t, nb.Equal(gotNB))
}

func TestDecodeHeadersMalformed(t *testing.T) {
	for _, h := range []natsgo.Header{
		{HeaderNotBefore: {"yesterday"}},
		{HeaderEncoded: {"nopair"}},
		{HeaderEncoded: {"!!=AA"}},
		{HeaderEncoded: {"AA=!!"}},
	} {
		_, _, _, err := decodeHeaders(h)
		require.ErrorIs(t, err, errBadHeaders, "%v", h)
	}
	// Headers of another writer are metadata; the client's own are not.
	uuid, md, _, err := decodeHeaders(natsgo.Header{"X-Foo": {"bar"}, "Nats-Msg-Id": {"1"}})
	require.NoError(t, err)
	require.Empty(t, uuid)
	require.Equal(t, message.Metadata{"X-Foo": "bar"}, md)
}

func FuzzHeadersRoundTrip(f *testing.F) {
	f.Add("hub-key", "v", "k2", "a\r\nb")
	f.Add("Nats-Expected-Stream", "x", "hub-nats-meta", "y")
	f.Add("", "", "\x00", "\xff")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		md := message.Metadata{k1: v1, k2: v2}
		_, got, _ := roundTrip(t, "u", md, time.Time{})
		require.Equal(t, md, got)
	})
}

func FuzzDecodeHeaders(f *testing.F) {
	f.Add("aGk=aGk,", "2026-12-02T04:00:00Z")
	f.Fuzz(func(t *testing.T, enc, nb string) {
		// Never panics; an error or metadata.
		_, _, _, _ = decodeHeaders(natsgo.Header{HeaderEncoded: {enc}, HeaderNotBefore: {nb}})
	})
}

func TestMsgID(t *testing.T) {
	m := message.NewMessage("u", []byte("p"))
	m.Metadata.Set("a", "1")
	same := message.NewMessage("u", []byte("p"))
	same.Metadata.Set("a", "1")
	require.Equal(t, msgID(m), msgID(same))
	other := message.NewMessage("u", []byte("p"))
	other.Metadata.Set("a", "2")
	require.NotEqual(t, msgID(m), msgID(other))
	// Length-prefixed: moving bytes between key and value changes the ID.
	x := message.NewMessage("u", []byte("p"))
	x.Metadata.Set("a1", "")
	y := message.NewMessage("u", []byte("p"))
	y.Metadata.Set("a", "1")
	require.NotEqual(t, msgID(x), msgID(y))
	require.Empty(t, msgID(message.NewMessage("", nil)))
}
