package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Codec turns payloads into bytes and back. It must be safe for concurrent
// use. The hub writes ContentType into every message's hub-content-type and
// refuses to decode a message whose content type differs.
type Codec interface {
	ContentType() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec, on encoding/json.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Marshal encodes v as JSON.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Schema names a payload type and its version. Every published message
// carries both (hub-schema, hub-schema-version) so consumers can read old
// versions through upcasters and refuse versions they do not know.
type Schema struct {
	Name    string
	Version int
}

// Schemer is implemented by payload types that name their own schema. Types
// that do not get the Go type's name and version 1.
type Schemer interface {
	HubSchema() Schema
}

// Upcaster rewrites a payload of schema version From into version From+1.
type Upcaster struct {
	From int
	Func func(payload []byte) ([]byte, error)
}

// Decode errors. All of them are permanent: the message goes to the
// dead-letter queue at once with reason [ReasonDecode].
var (
	// ErrUnknownVersion: the message's schema version is newer than the
	// handler knows, or older with no upcaster path.
	ErrUnknownVersion = errors.New("hub: unknown schema version")
	// ErrSchemaMismatch: the message carries another schema name than the
	// handler's payload type.
	ErrSchemaMismatch = errors.New("hub: schema mismatch")
	// ErrDecode: the payload could not be decoded.
	ErrDecode = errors.New("hub: cannot decode payload")
)

type schemaInfo struct {
	Schema
	version string // Version in decimal, ready for metadata
	ups     map[int]func([]byte) ([]byte, error)
}

type schemaRegistry struct {
	m sync.Map // reflect.Type -> *schemaInfo
}

// RegisterSchema sets the schema name and version the hub writes for T and
// expects when decoding T, and the upcasters that bring older versions up to
// it. Call it before publishing or handling T. Registering T twice replaces
// the earlier registration.
func RegisterSchema[T any](h *Hub, name string, version int, ups ...Upcaster) error {
	if name == "" {
		return errors.New("hub: RegisterSchema needs a schema name")
	}
	if version < 1 {
		return fmt.Errorf("hub: schema %q version %d; versions start at 1", name, version)
	}
	info := &schemaInfo{Schema: Schema{Name: name, Version: version}, version: strconv.Itoa(version)}
	for _, u := range ups {
		if u.Func == nil || u.From < 1 || u.From >= version {
			return fmt.Errorf("hub: schema %q: upcaster from version %d must have a Func and 1 <= From < %d", name, u.From, version)
		}
		if info.ups == nil {
			info.ups = make(map[int]func([]byte) ([]byte, error))
		}
		if _, dup := info.ups[u.From]; dup {
			return fmt.Errorf("hub: schema %q: two upcasters from version %d", name, u.From)
		}
		info.ups[u.From] = u.Func
	}
	h.schemas.m.Store(reflect.TypeFor[T](), info)
	return nil
}

func schemaOf[T any](r *schemaRegistry) *schemaInfo {
	t := reflect.TypeFor[T]()
	if v, ok := r.m.Load(t); ok {
		return v.(*schemaInfo)
	}
	var s Schema
	var zero T
	if sc, ok := any(zero).(Schemer); ok {
		s = sc.HubSchema()
	}
	if s.Name == "" {
		s.Name = t.Name()
		if s.Name == "" {
			s.Name = t.String()
		}
	}
	if s.Version < 1 {
		s.Version = 1
	}
	info := &schemaInfo{Schema: s, version: strconv.Itoa(s.Version)}
	v, _ := r.m.LoadOrStore(t, info)
	return v.(*schemaInfo)
}

// decodePayload checks a message's schema against info, upcasts, and
// decodes it into v.
func decodePayload(c Codec, info *schemaInfo, md message.Metadata, payload []byte, v any) error {
	if ct := md.Get(KeyContentType); ct != "" && ct != c.ContentType() {
		return fmt.Errorf("%w: content type %q, codec reads %q", ErrDecode, ct, c.ContentType())
	}
	if name := md.Get(KeySchema); name != "" && name != info.Name {
		return fmt.Errorf("%w: message is %q, handler reads %q", ErrSchemaMismatch, name, info.Name)
	}
	if vs := md.Get(KeySchemaVersion); vs != "" && vs != info.version {
		ver, err := strconv.Atoi(vs)
		if err != nil || ver < 1 {
			return fmt.Errorf("%w: %s %q is not a positive integer", ErrUnknownVersion, KeySchemaVersion, vs)
		}
		if ver > info.Version {
			return fmt.Errorf("%w: %s version %d is newer than %d, the newest this handler reads; deploy the new consumer first", ErrUnknownVersion, info.Name, ver, info.Version)
		}
		for ; ver < info.Version; ver++ {
			up := info.ups[ver]
			if up == nil {
				return fmt.Errorf("%w: %s version %d has no upcaster to %d; register one with RegisterSchema", ErrUnknownVersion, info.Name, ver, ver+1)
			}
			var err error
			if payload, err = up(payload); err != nil {
				return fmt.Errorf("%w: upcasting %s from version %d: %w", ErrDecode, info.Name, ver, err)
			}
		}
	}
	if err := c.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

func typeName(v any) string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// ErrDecrypt: the payload could not be decrypted (no keyring, unknown key
// ID, or a failed GCM tag). Permanent, like every decode error.
var ErrDecrypt = errors.New("hub: cannot decrypt payload")

// plaintext returns msg's payload, decrypted when it carries a key ID.
func (h *Hub) plaintext(msg *message.Message) ([]byte, error) {
	keyID := msg.Metadata.Get(KeyEncKeyID)
	if keyID == "" {
		return msg.Payload, nil
	}
	if h.cfg.Encryption == nil {
		return nil, fmt.Errorf("%w: message is encrypted with key %q and the hub has no Config.Encryption", ErrDecrypt, keyID)
	}
	p, err := h.cfg.Encryption.Decrypt(keyID, msg.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrDecrypt, keyID, err)
	}
	return p, nil
}

// Decode decodes a raw message published by a hub into v (a pointer),
// decrypting and upcasting it as a handler of *v's type would. Tools and
// tests use it to read messages outside a handler.
func Decode[T any](h *Hub, m *message.Message, v *T) error {
	payload, err := h.plaintext(m)
	if err != nil {
		return err
	}
	return decodePayload(h.cfg.Codec, schemaOf[T](&h.schemas), m.Metadata, payload, v)
}
