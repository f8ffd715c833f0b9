// Package crypto seals data at rest with AES-256-GCM under named, rotatable
// keys.
//
// Each Seal draws a fresh random 96-bit nonce and prepends it to the
// ciphertext, and the caller binds the ciphertext to its context through the
// additional authenticated data (the worker uses the message id), so a
// ciphertext copied onto another row does not open. The id of the key that
// sealed a value is stored next to it: the first key is the active one, the
// others only open values sealed before a rotation.
package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// KeySize is the length of an AES-256 key in bytes.
const KeySize = 32

// DefaultKeyID names the key given with the ENCRYPTION_KEY shorthand.
const DefaultKeyID = "default"

const (
	nonceSize  = 12 // the standard GCM nonce (96 bits)
	overhead   = nonceSize + 16
	maxIDBytes = 32
)

// Errors Open reports, wrapped in an *ierr.Error.
var (
	// ErrUnknownKey: the value was sealed with a key that is no longer configured.
	ErrUnknownKey = errors.New("unknown encryption key id")
	// ErrDecrypt: wrong key, wrong additional data, or tampered ciphertext.
	ErrDecrypt = errors.New("message authentication failed")
)

// Key is a named AES-256 key. Its material never appears in formatted output.
type Key struct {
	id     string
	secret []byte
}

// NewKey builds a key; id is 1–32 characters of [A-Za-z0-9._-] and secret is
// exactly 32 bytes.
func NewKey(id string, secret []byte) (Key, error) {
	if err := checkID(id); err != nil {
		return Key{}, err
	}
	if len(secret) != KeySize {
		return Key{}, fmt.Errorf("key %q must be %d bytes, got %d", id, KeySize, len(secret))
	}
	return Key{id: id, secret: append([]byte(nil), secret...)}, nil
}

// GenerateKey returns a new random key, for tests and the dev stack.
func GenerateKey(id string) (Key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, err
	}
	return NewKey(id, secret)
}

// ID is the key's name, stored with every value it seals.
func (k Key) ID() string { return k.id }

// Encode is the key's ENCRYPTION_KEYS entry, "id:<base64>".
func (k Key) Encode() string {
	return k.id + ":" + base64.StdEncoding.EncodeToString(k.secret)
}

// String redacts the key material.
func (k Key) String() string { return "crypto.Key(" + k.id + ")" }

// GoString redacts the key material from %#v too.
func (k Key) GoString() string { return k.String() }

func checkID(id string) error {
	if id == "" || len(id) > maxIDBytes {
		return fmt.Errorf("key id %q must be 1 to %d characters", id, maxIDBytes)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key id %q may contain only letters, digits and . _ -", id)
		}
	}
	return nil
}

// ParseKeys reads the configured keys: encryptionKeys is the ENCRYPTION_KEYS
// list "k2:<base64>,k1:<base64>" (first is active), encryptionKey the
// ENCRYPTION_KEY shorthand for a single key named DefaultKeyID. Exactly one
// of the two must be set. Errors never contain key material.
func ParseKeys(encryptionKeys, encryptionKey string) ([]Key, error) {
	encryptionKeys, encryptionKey = strings.TrimSpace(encryptionKeys), strings.TrimSpace(encryptionKey)
	switch {
	case encryptionKeys != "" && encryptionKey != "":
		return nil, errors.New("set ENCRYPTION_KEYS or ENCRYPTION_KEY, not both")
	case encryptionKey != "":
		secret, err := decodeSecret(encryptionKey)
		if err != nil {
			return nil, fmt.Errorf("ENCRYPTION_KEY: %w", err)
		}
		k, err := NewKey(DefaultKeyID, secret)
		if err != nil {
			return nil, fmt.Errorf("ENCRYPTION_KEY: %w", err)
		}
		return []Key{k}, nil
	case encryptionKeys == "":
		return nil, errors.New("ENCRYPTION_KEYS or ENCRYPTION_KEY is required (photos are never stored unencrypted)")
	}
	var keys []Key
	seen := map[string]bool{}
	for i, entry := range strings.Split(encryptionKeys, ",") {
		entry = strings.TrimSpace(entry)
		id, b64, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("ENCRYPTION_KEYS: entry %d must be id:<base64 of %d bytes>", i+1, KeySize)
		}
		id = strings.TrimSpace(id)
		if seen[id] {
			return nil, fmt.Errorf("ENCRYPTION_KEYS: key id %q appears more than once", id)
		}
		seen[id] = true
		secret, err := decodeSecret(b64)
		if err != nil {
			return nil, fmt.Errorf("ENCRYPTION_KEYS: key %q: %w", id, err)
		}
		k, err := NewKey(id, secret)
		if err != nil {
			return nil, fmt.Errorf("ENCRYPTION_KEYS: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// decodeSecret accepts standard or URL-safe base64, padded or not.
func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("must decode to %d bytes, got %d", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("is not valid base64")
}

// Sealer encrypts with the active key and decrypts with any configured key.
// It is safe for concurrent use.
type Sealer struct {
	active string
	aeads  map[string]cipher.AEAD
}

// NewSealer builds a sealer; keys[0] is the active key.
func NewSealer(keys []Key) (*Sealer, error) {
	const op = "crypto.NewSealer"
	if len(keys) == 0 {
		return nil, ierr.Errorf(ierr.Misconfigured, op, "no encryption key configured")
	}
	s := &Sealer{active: keys[0].id, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if _, dup := s.aeads[k.id]; dup {
			return nil, ierr.Errorf(ierr.Misconfigured, op, "key id %q appears more than once", k.id)
		}
		if len(k.secret) != KeySize {
			return nil, ierr.Errorf(ierr.Misconfigured, op, "key %q is not a valid %d-byte key", k.id, KeySize)
		}
		block, err := aes.NewCipher(k.secret)
		if err != nil {
			return nil, ierr.E(ierr.Misconfigured, op, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, ierr.E(ierr.Misconfigured, op, err)
		}
		s.aeads[k.id] = aead
	}
	return s, nil
}

// ActiveKeyID is the id of the key Seal uses.
func (s *Sealer) ActiveKeyID() string { return s.active }

// Seal encrypts plaintext with the active key, authenticating aad too. The
// result is nonce || ciphertext || tag.
func (s *Sealer) Seal(plaintext, aad []byte) (keyID string, ciphertext []byte, err error) {
	aead := s.aeads[s.active]
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, ierr.E(ierr.Internal, "crypto.Seal", err)
	}
	return s.active, aead.Seal(out, out[:nonceSize], plaintext, aad), nil
}

// Open decrypts a value Seal produced under keyID with the same aad.
func (s *Sealer) Open(keyID string, ciphertext, aad []byte) ([]byte, error) {
	const op = "crypto.Open"
	aead, ok := s.aeads[keyID]
	if !ok {
		return nil, ierr.E(ierr.Misconfigured, op, fmt.Errorf("%w %q", ErrUnknownKey, keyID))
	}
	if len(ciphertext) < overhead {
		return nil, ierr.E(ierr.Invalid, op, ErrDecrypt)
	}
	pt, err := aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], aad)
	if err != nil {
		return nil, ierr.E(ierr.Invalid, op, ErrDecrypt)
	}
	return pt, nil
}
