package api

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// API keys have the form "hh_<id>_<secret>". The ID names the key (in logs,
// rate limits, revocation); the secret is at least MinSecretLength
// characters of high entropy (Generate makes 256 random bits).
const (
	KeyPrefix       = "hh_"
	MinSecretLength = 32
	maxKeyIDLength  = 64
)

// Errors of API key authentication.
var (
	// ErrKeyInvalid is returned for a malformed key, an unknown ID or a
	// wrong secret: the three are not told apart.
	ErrKeyInvalid = errors.New("api: invalid API key")
	// ErrKeyExpired is returned for a correct key past its expiry.
	ErrKeyExpired = errors.New("api: API key expired")
)

// KeyStore holds API keys. It keeps only the SHA-256 hash of each key,
// never the key, and compares hashes in constant time.
//
// Why SHA-256 and not bcrypt: bcrypt, scrypt and argon2 are slow on purpose
// to protect low-entropy passwords against guessing. An API key carries 256
// random bits (at least MinSecretLength characters), which no attacker can
// guess however fast the hash, so a slow hash would add nothing but
// 50-100 ms of CPU to every request, a denial-of-service lever (bcrypt also
// ignores input past 72 bytes). A fast hash of a high-entropy secret is what
// GitHub and Stripe style tokens use.
//
// A KeyStore is safe for concurrent use; keys may be added and removed
// while the server runs.
type KeyStore struct {
	mu   sync.RWMutex
	keys map[string]apiKey
}

type apiKey struct {
	hash    [sha256.Size]byte
	scopes  []string
	expires time.Time // zero: never
	tenant  string
}

// NewKeyStore returns an empty KeyStore.
func NewKeyStore() *KeyStore { return &KeyStore{keys: make(map[string]apiKey)} }

// HashKey returns the hash LoadKeyStore expects for a full key
// ("hh_<id>_<secret>"): "sha256:" and the hex SHA-256 of the key.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(h[:])
}

// FormatKey returns the key a client sends for id and secret.
func FormatKey(id, secret string) string { return KeyPrefix + id + "_" + secret }

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLength {
		return fmt.Errorf("api: key ID %q must be 1 to %d characters", id, maxKeyIDLength)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("api: key ID %q may hold only letters, digits, '-' and '.' (no '_', which ends the ID in a key)", id)
		}
	}
	return nil
}

// Add stores the key FormatKey(id, plaintextSecret), hashed. scopes are
// what it may do (ScopeWrite to post records); a zero expires never
// expires; tenant is copied into every record it posts. The secret must be
// at least MinSecretLength characters of high entropy and free of spaces;
// an ID already present is an error (Remove it first to rotate).
func (k *KeyStore) Add(id, plaintextSecret string, scopes []string, expires time.Time, tenant string) error {
	if err := validKeyID(id); err != nil {
		return err
	}
	if len(plaintextSecret) < MinSecretLength {
		return fmt.Errorf("api: secret of key %q has %d characters; use at least %d random characters (Generate makes one)", id, len(plaintextSecret), MinSecretLength)
	}
	if strings.ContainsAny(plaintextSecret, " \t\r\n") {
		return fmt.Errorf("api: secret of key %q holds white space; use printable characters", id)
	}
	return k.add(id, sha256.Sum256([]byte(FormatKey(id, plaintextSecret))), scopes, expires, tenant)
}

func (k *KeyStore) add(id string, hash [sha256.Size]byte, scopes []string, expires time.Time, tenant string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]apiKey)
	}
	if _, ok := k.keys[id]; ok {
		return fmt.Errorf("api: key ID %q already exists; Remove it first or pick another ID", id)
	}
	k.keys[id] = apiKey{hash: hash, scopes: slices.Clone(scopes), expires: expires, tenant: tenant}
	return nil
}

// Generate creates a key with 256 random bits, stores its hash and returns
// the plaintext "hh_<id>_<secret>" once: it cannot be recovered later. A
// zero ttl never expires.
func (k *KeyStore) Generate(id string, scopes []string, ttl time.Duration, tenant string) (plaintext string, err error) {
	if ttl < 0 {
		return "", fmt.Errorf("api: key %q ttl is %v; set a positive duration, or 0 for a key that never expires", id, ttl)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api: generating key %q: %w", id, err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b[:])
	var expires time.Time
	if ttl > 0 {
		expires = time.Now().Add(ttl)
	}
	if err := k.Add(id, secret, scopes, expires, tenant); err != nil {
		return "", err
	}
	return FormatKey(id, secret), nil
}

// Remove revokes the key with id; it reports whether there was one.
func (k *KeyStore) Remove(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[id]
	delete(k.keys, id)
	return ok
}

// KeyEntry is one key of a LoadKeyStore file.
type KeyEntry struct {
	// ID is the key's ID, the <id> of "hh_<id>_<secret>".
	ID string `json:"id"`
	// Hash is HashKey of the full key: "sha256:<64 hex digits>".
	Hash   string   `json:"hash"`
	Scopes []string `json:"scopes"`
	// Expires is an RFC 3339 time; absent or zero never expires.
	Expires time.Time `json:"expires,omitzero"`
	Tenant  string    `json:"tenant,omitempty"`
}

// LoadKeyStore reads keys from r: a JSON array of KeyEntry objects or one
// object per line (JSON lines). Unknown fields are errors, so a misspelt
// "expires" cannot silently make a key eternal.
func LoadKeyStore(r io.Reader) (*KeyStore, error) {
	br := bufio.NewReader(r)
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	var entries []KeyEntry
	first, err := firstNonSpace(br)
	switch {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("api: reading keys: %w", err)
	case first == '[':
		if err := dec.Decode(&entries); err != nil {
			return nil, fmt.Errorf("api: reading keys (JSON array): %w", err)
		}
	default:
		for i := 1; ; i++ {
			var e KeyEntry
			if err := dec.Decode(&e); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("api: reading keys: entry %d: %w", i, err)
			}
			entries = append(entries, e)
		}
	}
	ks := NewKeyStore()
	for i, e := range entries {
		if err := validKeyID(e.ID); err != nil {
			return nil, fmt.Errorf("api: reading keys: entry %d: %w", i+1, err)
		}
		hexHash, ok := strings.CutPrefix(e.Hash, "sha256:")
		raw, err := hex.DecodeString(hexHash)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("api: reading keys: entry %d (%s): hash must be \"sha256:\" and 64 hex digits, as HashKey returns", i+1, e.ID)
		}
		if err := ks.add(e.ID, [sha256.Size]byte(raw), e.Scopes, e.Expires, e.Tenant); err != nil {
			return nil, fmt.Errorf("api: reading keys: entry %d: %w", i+1, err)
		}
	}
	return ks, nil
}

func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if !bytes.ContainsRune([]byte(" \t\r\n"), rune(b)) {
			return b, br.UnreadByte()
		}
	}
}

// dummyHash is compared against when the key ID is unknown, so an unknown
// ID costs the same work as a wrong secret.
var dummyHash = sha256.Sum256([]byte("harvest-hub unknown key"))

// authenticate checks key at now and returns the principal it names.
func (k *KeyStore) authenticate(key string, now time.Time) (principal, error) {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	id, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 {
		return principal{}, ErrKeyInvalid
	}
	sum := sha256.Sum256([]byte(key))
	k.mu.RLock()
	e, found := k.keys[id]
	k.mu.RUnlock()
	want := dummyHash
	if found {
		want = e.hash
	}
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !found {
		return principal{}, ErrKeyInvalid
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		return principal{}, fmt.Errorf("%w: key %q expired at %s", ErrKeyExpired, id, e.expires.UTC().Format(time.RFC3339))
	}
	return principal{id: "key:" + id, tenant: e.tenant, scopes: e.scopes}, nil
}
