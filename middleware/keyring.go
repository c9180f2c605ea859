package middleware

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/harvesthub/hub"
)

// Keyring errors. Decrypt errors reach the hub as hub.ErrDecrypt, a
// permanent decode error: the message is dead-lettered with its ciphertext
// kept, so it can be replayed once the key is back.
var (
	// ErrUnknownKey: the message names a key ID the keyring does not hold.
	ErrUnknownKey = errors.New("middleware: unknown encryption key id")
	// ErrCiphertext: the ciphertext is too short, or its GCM tag does not
	// match (tampered with, or sealed under another key with this ID).
	ErrCiphertext = errors.New("middleware: ciphertext rejected")
	// ErrBadKey: a key is not 32 bytes, or a key ID is unusable.
	ErrBadKey = errors.New("middleware: invalid keyring")
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

const nonceSize = 12

// Keyring encrypts payloads with AES-256-GCM under its current key and
// decrypts with any key it holds, so messages sealed before a key rotation
// still open. It implements hub.Encrypter: set it as hub.Config.Encryption.
//
// A sealed payload is a random 12-byte nonce followed by the GCM
// ciphertext and tag; the key ID (carried in hub-enc-key-id) is bound as
// additional data, so a payload cannot be passed off under another key ID.
// Key bytes are never printed: String, GoString and LogValue name the key
// IDs only. A Keyring is safe for concurrent use.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
}

var _ hub.Encrypter = (*Keyring)(nil)

// NewKeyring returns a keyring that encrypts with keys[current] and
// decrypts with any of keys. Every key must be 32 bytes (AES-256). The
// keyring copies nothing it does not need: keys may be wiped after.
func NewKeyring(current string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys; give at least the current key (32 random bytes)", ErrBadKey)
	}
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("%w: current key id %q is not among the keys %v", ErrBadKey, current, sortedIDs(keys))
	}
	k := &Keyring{current: current, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if err := validKeyID(id); err != nil {
			return nil, err
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("%w: key %q is %d bytes; AES-256 needs exactly %d (generate with: head -c 32 /dev/urandom | base64)", ErrBadKey, id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrBadKey, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrBadKey, id, err)
		}
		k.aeads[id] = aead
	}
	return k, nil
}

func validKeyID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty key id", ErrBadKey)
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%w: key id %q has a space or control character", ErrBadKey, id)
		}
	}
	return nil
}

func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Current returns the ID of the key that encrypts.
func (k *Keyring) Current() string { return k.current }

// IDs returns the IDs of every key, sorted.
func (k *Keyring) IDs() []string { return sortedIDs(k.aeads) }

// Encrypt seals plaintext under the current key.
func (k *Keyring) Encrypt(plaintext []byte) (string, []byte, error) {
	aead := k.aeads[k.current]
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, fmt.Errorf("middleware: reading a nonce: %w", err)
	}
	return k.current, aead.Seal(out, out, plaintext, []byte(k.current)), nil
}

// Decrypt opens a payload sealed under keyID.
func (k *Keyring) Decrypt(keyID string, ciphertext []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %q (the keyring holds %v)", ErrUnknownKey, keyID, k.IDs())
	}
	if len(ciphertext) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a nonce and a tag", ErrCiphertext, len(ciphertext))
	}
	p, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], []byte(keyID))
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrCiphertext, keyID, err)
	}
	return p, nil
}

// String names the current key and the key IDs, never key bytes.
func (k *Keyring) String() string {
	return fmt.Sprintf("Keyring{current: %s, keys: %v}", k.current, k.IDs())
}

// GoString is String: %#v prints no key bytes either.
func (k *Keyring) GoString() string { return k.String() }

// LogValue makes slog log the key IDs only.
func (k *Keyring) LogValue() slog.Value {
	return slog.GroupValue(slog.String("current", k.current), slog.Any("keys", k.IDs()))
}

// KeyringFromEnv reads a keyring from environment variables:
// <prefix>_KEY_<ID> holds key <ID> in standard or URL-safe base64 (with or
// without padding), and <prefix>_CURRENT names the current key. With prefix
// "HUB_ENC": HUB_ENC_KEY_2024A=..., HUB_ENC_KEY_2025A=...,
// HUB_ENC_CURRENT=2025A.
func KeyringFromEnv(prefix string) (*Keyring, error) {
	return keyringFromEnviron(prefix, os.Environ())
}

func keyringFromEnviron(prefix string, environ []string) (*Keyring, error) {
	prefix = strings.TrimSuffix(prefix, "_")
	keyPrefix, currentVar := prefix+"_KEY_", prefix+"_CURRENT"
	var current string
	keys := map[string][]byte{}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		switch {
		case name == currentVar:
			current = strings.TrimSpace(val)
		case strings.HasPrefix(name, keyPrefix):
			id := strings.TrimPrefix(name, keyPrefix)
			key, err := decodeKey(val)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, name, err)
			}
			keys[id] = key
		}
	}
	if current == "" {
		return nil, fmt.Errorf("%w: %s is not set; set it to the ID of the key that encrypts (one of %v)", ErrBadKey, currentVar, sortedIDs(keys))
	}
	return NewKeyring(current, keys)
}

// KeyringFromFiles reads a keyring from a directory, as a Kubernetes
// secret is mounted: every regular file is one key, named by its key ID,
// holding 32 raw bytes or their base64; the file "current" holds the ID of
// the current key. Hidden files (names starting with a dot) are skipped.
func KeyringFromFiles(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("middleware: reading keyring directory: %w", err)
	}
	var current string
	keys := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follows the symlinks of secret mounts
		if err != nil {
			return nil, fmt.Errorf("middleware: keyring file %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("middleware: keyring file %s: %w", path, err)
		}
		if name == "current" {
			current = strings.TrimSpace(string(b))
			continue
		}
		key := b
		if len(b) != KeySize {
			if key, err = decodeKey(string(b)); err != nil {
				return nil, fmt.Errorf("%w: file %s: %w", ErrBadKey, path, err)
			}
		}
		keys[name] = key
	}
	if current == "" {
		return nil, fmt.Errorf("%w: %s has no file \"current\" naming the current key (one of %v)", ErrBadKey, dir, sortedIDs(keys))
	}
	return NewKeyring(current, keys)
}

// decodeKey decodes base64 in any of the usual alphabets. Its errors never
// include the input.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}
