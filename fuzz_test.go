package hub_test

import (
	"context"
	"testing"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/broker/memory"
)

// FuzzDecode feeds arbitrary payloads and schema metadata to the decoder a
// handler uses: it must return a value or an error, never panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"r1","title":"t"}`), "Record", "1", "application/json")
	f.Add([]byte(`{"id":42}`), "Record", "1", "")
	f.Add([]byte(`{`), "", "", "")
	f.Add([]byte(`null`), "Record", "0", "application/json")
	f.Add([]byte(`[]`), "Other", "99999999999999999999", "text/plain")
	b, err := memory.New(memory.Config{})
	require.NoError(f, err)
	f.Cleanup(func() { _ = b.Close() })
	h, err := hub.New(b, hub.Config{})
	require.NoError(f, err)
	f.Cleanup(func() { _ = h.Close() })
	f.Fuzz(func(t *testing.T, payload []byte, schema, version, contentType string) {
		m := message.NewMessage("id", payload)
		m.Metadata.Set(hub.KeySchema, schema)
		m.Metadata.Set(hub.KeySchemaVersion, version)
		m.Metadata.Set(hub.KeyContentType, contentType)
		var r Record
		_ = hub.Decode(h, m, &r)
	})
}

// FuzzPublishDecode: whatever a publisher sends, a consumer of the same
// type decodes to the same value.
func FuzzPublishDecode(f *testing.F) {
	f.Add("r1", "Annual report")
	f.Add("", "\x00\xff")
	b, err := memory.New(memory.Config{})
	require.NoError(f, err)
	f.Cleanup(func() { _ = b.Close() })
	h, err := hub.New(b, hub.Config{})
	require.NoError(f, err)
	f.Cleanup(func() { _ = h.Close() })
	ch, err := b.Subscribe(context.Background(), "fuzz")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, id, title string) {
		in := Record{ID: id, Title: title}
		require.NoError(t, hub.Publish(context.Background(), h, "fuzz", in))
		m := <-ch
		m.Ack()
		var out Record
		require.NoError(t, hub.Decode(h, m, &out))
		if utf8.ValidString(id) && utf8.ValidString(title) { // JSON replaces invalid UTF-8
			require.Equal(t, in, out)
		}
	})
}
