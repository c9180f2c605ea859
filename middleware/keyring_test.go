package middleware_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/hubtest"
	"github.com/harvesthub/hub/middleware"
	"github.com/harvesthub/hub/retry"
)

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, middleware.KeySize)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func TestKeyringRoundTripAndRotation(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	old, err := middleware.NewKeyring("k1", map[string][]byte{"k1": k1})
	require.NoError(t, err)
	id, sealed, err := old.Encrypt([]byte("secret record"))
	require.NoError(t, err)
	require.Equal(t, "k1", id)
	require.NotContains(t, string(sealed), "secret")
	p, err := old.Decrypt(id, sealed)
	require.NoError(t, err)
	require.Equal(t, "secret record", string(p))

	// Two seals of one plaintext differ (random nonce).
	_, again, err := old.Encrypt([]byte("secret record"))
	require.NoError(t, err)
	require.NotEqual(t, sealed, again)

	// Rotate: k2 encrypts now, k1 still decrypts what it sealed.
	rotated, err := middleware.NewKeyring("k2", map[string][]byte{"k1": k1, "k2": k2})
	require.NoError(t, err)
	p, err = rotated.Decrypt("k1", sealed)
	require.NoError(t, err)
	require.Equal(t, "secret record", string(p))
	id2, sealed2, err := rotated.Encrypt([]byte("new"))
	require.NoError(t, err)
	require.Equal(t, "k2", id2)
	_, err = old.Decrypt(id2, sealed2)
	require.ErrorIs(t, err, middleware.ErrUnknownKey, "the old keyring has no k2")
}

func TestKeyringRejectsTamperingAndWrongKeys(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	kr, err := middleware.NewKeyring("k1", map[string][]byte{"k1": k1, "k2": k2})
	require.NoError(t, err)
	_, sealed, err := kr.Encrypt([]byte("payload"))
	require.NoError(t, err)

	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		_, err := kr.Decrypt("k1", bad)
		require.ErrorIs(t, err, middleware.ErrCiphertext, "flipped byte %d", i)
		require.ErrorContains(t, err, "message authentication failed")
	}
	_, err = kr.Decrypt("k2", sealed)
	require.ErrorIs(t, err, middleware.ErrCiphertext, "sealed under k1, opened as k2: the key id is bound")
	_, err = kr.Decrypt("k9", sealed)
	require.ErrorIs(t, err, middleware.ErrUnknownKey)
	_, err = kr.Decrypt("k1", sealed[:10])
	require.ErrorIs(t, err, middleware.ErrCiphertext)

	// A key of the same ID but other bytes fails too.
	other, err := middleware.NewKeyring("k1", map[string][]byte{"k1": newKey(t)})
	require.NoError(t, err)
	_, err = other.Decrypt("k1", sealed)
	require.ErrorIs(t, err, middleware.ErrCiphertext)
}

func TestKeyringRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name    string
		current string
		keys    map[string][]byte
		errPart string
	}{
		{"no keys", "k1", nil, "no keys"},
		{"short key", "k1", map[string][]byte{"k1": make([]byte, 16)}, "16 bytes"},
		{"long key", "k1", map[string][]byte{"k1": make([]byte, 33)}, "33 bytes"},
		{"missing current", "k2", map[string][]byte{"k1": make([]byte, 32)}, `current key id "k2"`},
		{"empty id", "", map[string][]byte{"": make([]byte, 32)}, "empty key id"},
		{"space in id", "a b", map[string][]byte{"a b": make([]byte, 32)}, "space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := middleware.NewKeyring(tc.current, tc.keys)
			require.ErrorIs(t, err, middleware.ErrBadKey)
			require.ErrorContains(t, err, tc.errPart)
		})
	}
}

func TestKeyringNeverPrintsKeys(t *testing.T) {
	key := bytes.Repeat([]byte{0xAB}, 32)
	kr, err := middleware.NewKeyring("k1", map[string][]byte{"k1": key, "k0": newKey(t)})
	require.NoError(t, err)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("keyring", "keyring", kr)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keyring", "keyring", kr)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&buf, format+"\n", kr)
	}
	out := buf.String()
	require.Contains(t, out, "k0")
	require.Contains(t, out, "k1")
	for _, leak := range []string{"\xab\xab", "abab", "ABAB", "q6ur", base64.StdEncoding.EncodeToString(key)[:8], "171 171"} {
		require.NotContains(t, out, leak)
	}
	require.Equal(t, "Keyring{current: k1, keys: [k0 k1]}", kr.String())
}

func TestKeyringFromEnv(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	t.Setenv("TESTHUB_ENC_KEY_2024a", base64.StdEncoding.EncodeToString(k1))
	t.Setenv("TESTHUB_ENC_KEY_2025a", base64.RawURLEncoding.EncodeToString(k2))
	t.Setenv("TESTHUB_ENC_CURRENT", "2025a")
	kr, err := middleware.KeyringFromEnv("TESTHUB_ENC")
	require.NoError(t, err)
	require.Equal(t, "2025a", kr.Current())
	require.Equal(t, []string{"2024a", "2025a"}, kr.IDs())

	ref, err := middleware.NewKeyring("2024a", map[string][]byte{"2024a": k1})
	require.NoError(t, err)
	_, sealed, err := ref.Encrypt([]byte("x"))
	require.NoError(t, err)
	p, err := kr.Decrypt("2024a", sealed)
	require.NoError(t, err)
	require.Equal(t, "x", string(p))

	t.Setenv("TESTHUB_ENC_CURRENT", "")
	_, err = middleware.KeyringFromEnv("TESTHUB_ENC_")
	require.ErrorContains(t, err, "TESTHUB_ENC_CURRENT is not set")

	t.Setenv("TESTHUB_ENC_CURRENT", "2025a")
	t.Setenv("TESTHUB_ENC_KEY_bad", "not base64 !!")
	_, err = middleware.KeyringFromEnv("TESTHUB_ENC")
	require.ErrorIs(t, err, middleware.ErrBadKey)
	require.NotContains(t, err.Error(), "not base64 !!", "key material is never echoed")
}

func TestKeyringFromFiles(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(t), newKey(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k1"), k1, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "k2"), []byte(base64.StdEncoding.EncodeToString(k2)+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current"), []byte("k2\n"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "..data"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".hidden"), []byte("x"), 0o600))
	kr, err := middleware.KeyringFromFiles(dir)
	require.NoError(t, err)
	require.Equal(t, "k2", kr.Current())
	require.Equal(t, []string{"k1", "k2"}, kr.IDs())

	require.NoError(t, os.Remove(filepath.Join(dir, "current")))
	_, err = middleware.KeyringFromFiles(dir)
	require.ErrorContains(t, err, `no file "current"`)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "current"), []byte("k1"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "short"), []byte(base64.StdEncoding.EncodeToString(k1[:16])), 0o600))
	_, err = middleware.KeyringFromFiles(dir)
	require.ErrorContains(t, err, `key "short" is 16 bytes`)

	_, err = middleware.KeyringFromFiles(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

type Record struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// The broker and the dead-letter topic only ever hold ciphertext.
func TestEncryptionThroughHub(t *testing.T) {
	kr, err := middleware.NewKeyring("k1", map[string][]byte{"k1": newKey(t)})
	require.NoError(t, err)
	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Encryption = kr }))
	var got []Record
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		got = append(got, m.Payload)
		if m.Payload.ID == "bad" {
			return retry.Permanent(errors.New("rejected"))
		}
		return nil
	}))
	th.Start()
	hubtest.Send(t, th, "records", Record{ID: "ok", Secret: "plaintext-ok-4242"})
	hubtest.Send(t, th, "records", Record{ID: "bad", Secret: "plaintext-bad-4343"})
	th.Settle(t)

	require.Equal(t, []Record{{"ok", "plaintext-ok-4242"}, {"bad", "plaintext-bad-4343"}}, got)
	msgs := th.Messages("records")
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		require.Equal(t, "k1", m.Metadata.Get(hub.KeyEncKeyID))
		require.NotContains(t, string(m.Payload), "plaintext")
		require.NotContains(t, string(m.Payload), "secret")
	}
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	require.Equal(t, hub.ReasonPermanent, dead[0].Reason)
	require.NotContains(t, string(dead[0].Payload), "plaintext")
	require.Equal(t, "k1", dead[0].Metadata[hub.KeyEncKeyID])
	p, err := kr.Decrypt("k1", dead[0].Payload)
	require.NoError(t, err)
	require.Contains(t, string(p), "plaintext-bad-4343", "the letter keeps the ciphertext, openable for replay")
}

// A message sealed under a key the consumer lacks is dead-lettered as a
// decode error, ciphertext kept, and the queue moves on.
func TestEncryptionUnknownKeyDeadLetters(t *testing.T) {
	producer, err := middleware.NewKeyring("new", map[string][]byte{"new": newKey(t)})
	require.NoError(t, err)
	consumer, err := middleware.NewKeyring("old", map[string][]byte{"old": newKey(t)})
	require.NoError(t, err)
	_, sealed, err := producer.Encrypt([]byte(`{"id":"x","secret":"plaintext"}`))
	require.NoError(t, err)

	th := hubtest.New(t, hubtest.WithConfig(func(c *hub.Config) { c.Encryption = consumer }))
	calls := 0
	require.NoError(t, hub.Handle(th.Hub, "records", func(ctx context.Context, m hub.Message[Record]) error {
		calls++
		return nil
	}))
	th.Start()
	raw := newRaw("m1", sealed)
	raw.Metadata.Set(hub.KeyEncKeyID, "new")
	require.NoError(t, th.Broker.Publish("records", raw))
	hubtest.Send(t, th, "records", Record{ID: "after"})
	th.Settle(t)
	require.Equal(t, 1, calls, "the message behind is handled")
	dead := th.DeadLetters("records")
	require.Len(t, dead, 1)
	require.Equal(t, hub.ReasonDecode, dead[0].Reason)
	require.Contains(t, dead[0].Error, "unknown encryption key id")
	require.Equal(t, sealed, dead[0].Payload)
}
