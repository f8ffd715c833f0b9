package config

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
)

// Scope is a permission an API key carries.
type Scope string

// The scopes of API_KEYS.
const (
	ScopeIngest Scope = "ingest" // POST telemetry
	ScopeRead   Scope = "read"   // GET stored data
)

// MinSecretLen is the shortest plaintext API key secret accepted; a
// sha256:<hex> digest is not subject to it (its entropy is not visible).
const MinSecretLen = 16

// APIKey is one entry of API_KEYS. Only the SHA-256 digest of the secret is
// kept, so the plaintext never outlives start-up.
type APIKey struct {
	Name   string // logged and recorded as the actor; never the secret
	Digest [sha256.Size]byte
	Scopes []Scope
}

// Allows reports whether the key carries scope s.
func (k APIKey) Allows(s Scope) bool {
	for _, have := range k.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// LogValue keeps the digest out of logs.
func (k APIKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", k.Name), slog.Any("scopes", k.Scopes))
}

// NewAPIKey builds a key from its plaintext secret (tests and dev tooling).
func NewAPIKey(name, secret string, scopes ...Scope) APIKey {
	return APIKey{Name: name, Digest: sha256.Sum256([]byte(secret)), Scopes: scopes}
}

// apiKeys parses "name:secret:scope[+scope]" entries, comma-separated. The
// secret is what lies between the first and the last colon, so it may be
// "sha256:<64 hex digits>" or contain colons itself. Errors name the entry by
// position and key name, never the secret.
func (e *env) apiKeys(name string) []APIKey {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		e.fail(name, "is required: comma-separated name:secret:scope[+scope] entries, scopes ingest and read")
		return nil
	}
	var keys []APIKey
	seen := map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		first, last := strings.Index(entry, ":"), strings.LastIndex(entry, ":")
		if first < 0 || first == last {
			e.fail(name, "entry %d must be name:secret:scope[+scope]", i+1)
			continue
		}
		keyName, secret, scopeList := entry[:first], entry[first+1:last], entry[last+1:]
		ok := true
		if !validKeyName(keyName) {
			e.fail(name, "entry %d: name must be 1-64 characters of [A-Za-z0-9._-]", i+1)
			ok = false
		} else if seen[keyName] {
			e.fail(name, "entry %d: key name %q appears more than once", i+1, keyName)
			ok = false
		}
		seen[keyName] = true
		k := APIKey{Name: keyName}
		if hexDigest, isDigest := strings.CutPrefix(secret, "sha256:"); isDigest {
			b, err := hex.DecodeString(hexDigest)
			if err != nil || len(b) != sha256.Size {
				e.fail(name, "entry %d (%s): sha256: secret must be 64 hex digits", i+1, keyName)
				ok = false
			} else {
				copy(k.Digest[:], b)
			}
		} else if isExample(secret) {
			e.fail(name, "entry %d (%s) still has the example secret of .env.example; generate one with: openssl rand -hex 32", i+1, keyName)
			ok = false
		} else if len(secret) < MinSecretLen {
			e.fail(name, "entry %d (%s): secret must be at least %d characters (or sha256:<hex>)", i+1, keyName, MinSecretLen)
			ok = false
		} else {
			k.Digest = sha256.Sum256([]byte(secret))
		}
		for _, s := range strings.Split(scopeList, "+") {
			switch sc := Scope(s); sc {
			case ScopeIngest, ScopeRead:
				if k.Allows(sc) {
					e.fail(name, "entry %d (%s): scope %q repeated", i+1, keyName, s)
					ok = false
				}
				k.Scopes = append(k.Scopes, sc)
			default:
				e.fail(name, "entry %d (%s): unknown scope %q; use ingest, read or ingest+read", i+1, keyName, s)
				ok = false
			}
		}
		if ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func validKeyName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
