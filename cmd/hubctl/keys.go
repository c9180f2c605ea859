package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/harvesthub/hub"
	"github.com/harvesthub/hub/middleware"
)

// keyFlags find the keyring that decrypts payloads for show.
type keyFlags struct {
	dir       string
	files     stringList
	envPrefix string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, strings.Split(v, ",")...); return nil }

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.dir, "key-dir", "", "keyring directory: one file per key ID (32 bytes or base64) and a file \"current\"")
	fs.Var(&k.files, "key-file", "a key file named by its key ID (32 bytes or base64); repeatable or comma-separated")
	fs.StringVar(&k.envPrefix, "key-env", "HUB_ENC", "read the keyring from <prefix>_KEY_<ID> and <prefix>_CURRENT when no --key-dir or --key-file is given")
}

// keyring returns the keyring the flags name, or nil when none is given.
// A keyring named and unreadable is a usage error.
func (k *keyFlags) keyring(env func(string) string) (hub.Encrypter, error) {
	switch {
	case k.dir != "" && len(k.files) > 0:
		return nil, usagef("give --key-dir or --key-file, not both")
	case k.dir != "":
		ring, err := middleware.KeyringFromFiles(k.dir)
		if err != nil {
			return nil, usagef("--key-dir %s: %v", k.dir, err)
		}
		return ring, nil
	case len(k.files) > 0:
		keys := make(map[string][]byte, len(k.files))
		for _, f := range k.files {
			key, err := readKey(f)
			if err != nil {
				return nil, usagef("--key-file %s: %v", f, err)
			}
			keys[filepath.Base(f)] = key
		}
		ring, err := middleware.NewKeyring(filepath.Base(k.files[0]), keys)
		if err != nil {
			return nil, usagef("--key-file: %v", err)
		}
		return ring, nil
	case k.envPrefix != "" && env(k.envPrefix+"_CURRENT") != "":
		ring, err := middleware.KeyringFromEnv(k.envPrefix)
		if err != nil {
			return nil, usagef("keyring from %s_*: %v", k.envPrefix, err)
		}
		return ring, nil
	}
	return nil, nil
}

// readKey reads a key file: 32 raw bytes, or their base64 (standard or
// URL-safe, padded or not).
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == middleware.KeySize {
		return b, nil
	}
	s := strings.TrimSpace(string(b))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("not %d bytes and not base64", middleware.KeySize)
}
