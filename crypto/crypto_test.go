package crypto_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/ierr"
)

func mustKey(t *testing.T, id string) crypto.Key {
	t.Helper()
	k, err := crypto.GenerateKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSealer(t *testing.T, keys ...crypto.Key) *crypto.Sealer {
	t.Helper()
	s, err := crypto.NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := mustSealer(t, mustKey(t, "k1"))
	aad := []byte("0192f6b4-0000-7000-8000-000000000001")
	for _, size := range []int{0, 1, 1000, 5 << 20} {
		plain := bytes.Repeat([]byte{0xFF, 0xD8, 0xFF, 0x42}, size/4+1)[:size]
		keyID, sealed, err := s.Seal(plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		if keyID != "k1" {
			t.Fatalf("key id = %q, want k1", keyID)
		}
		if len(sealed) != size+12+16 {
			t.Fatalf("sealed length = %d, want %d", len(sealed), size+28)
		}
		if size >= 16 && bytes.Contains(sealed, plain[:min(size, 64)]) {
			t.Fatal("ciphertext contains the plaintext")
		}
		got, err := s.Open(keyID, sealed, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("round trip of %d bytes changed the data", size)
		}
	}
}

func TestOpenFailures(t *testing.T) {
	k1, other := mustKey(t, "k1"), mustKey(t, "k1")
	s := mustSealer(t, k1)
	aad := []byte("message-1")
	keyID, sealed, err := s.Seal([]byte("a photo"), aad)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		sealer *crypto.Sealer
		keyID  string
		data   []byte
		aad    []byte
		want   error
		kind   ierr.Kind
	}{
		{"wrong key material under the same id", mustSealer(t, other), keyID, sealed, aad, crypto.ErrDecrypt, ierr.Invalid},
		{"wrong aad (another message id)", s, keyID, sealed, []byte("message-2"), crypto.ErrDecrypt, ierr.Invalid},
		{"missing aad", s, keyID, sealed, nil, crypto.ErrDecrypt, ierr.Invalid},
		{"tampered ciphertext", s, keyID, tampered, aad, crypto.ErrDecrypt, ierr.Invalid},
		{"truncated", s, keyID, sealed[:20], aad, crypto.ErrDecrypt, ierr.Invalid},
		{"unknown key id", s, "k9", sealed, aad, crypto.ErrUnknownKey, ierr.Misconfigured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.keyID, tt.data, tt.aad)
			if !errors.Is(err, tt.want) || ierr.KindOf(err) != tt.kind {
				t.Fatalf("Open = %q, %v; want %v of kind %v", got, err, tt.want, tt.kind)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := mustKey(t, "k1"), mustKey(t, "k2")
	before := mustSealer(t, k1)
	aad := []byte("m")
	oldID, oldSealed, err := before.Seal([]byte("old photo"), aad)
	if err != nil {
		t.Fatal(err)
	}
	after := mustSealer(t, k2, k1) // k2 active, k1 kept for old rows
	newID, newSealed, err := after.Seal([]byte("new photo"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if oldID != "k1" || newID != "k2" || after.ActiveKeyID() != "k2" {
		t.Fatalf("key ids: old %q new %q active %q", oldID, newID, after.ActiveKeyID())
	}
	if got, err := after.Open(oldID, oldSealed, aad); err != nil || string(got) != "old photo" {
		t.Fatalf("old row after rotation: %q, %v", got, err)
	}
	if got, err := after.Open(newID, newSealed, aad); err != nil || string(got) != "new photo" {
		t.Fatalf("new row: %q, %v", got, err)
	}
	if _, err := before.Open(newID, newSealed, aad); !errors.Is(err, crypto.ErrUnknownKey) {
		t.Fatalf("a sealer without k2 opened a k2 row: %v", err)
	}
}

func TestNonceUniqueness(t *testing.T) {
	s := mustSealer(t, mustKey(t, "k1"))
	plain := []byte("the same photo every time")
	seenNonce := map[string]bool{}
	seenSealed := map[string]bool{}
	for range 10000 {
		_, sealed, err := s.Seal(plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(sealed[:12])
		if seenNonce[nonce] || seenSealed[string(sealed)] {
			t.Fatal("nonce or ciphertext repeated")
		}
		seenNonce[nonce], seenSealed[string(sealed)] = true, true
	}
}

func TestParseKeys(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	raw := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))
	tests := []struct {
		name, keys, key string
		wantIDs         []string
		wantErr         string
	}{
		{"shorthand", "", b64(32), []string{"default"}, ""},
		{"list, first active", "k2:" + b64(32) + ", k1:" + b64(32), "", []string{"k2", "k1"}, ""},
		{"url-safe unpadded", "k1:" + raw, "", []string{"k1"}, ""},
		{"nothing set", "", "", nil, "is required"},
		{"both set", "k1:" + b64(32), b64(32), nil, "not both"},
		{"short key", "", b64(16), nil, "must decode to 32 bytes"},
		{"long key", "k1:" + b64(33), "", nil, "must decode to 32 bytes"},
		{"bad base64", "k1:not*base64!", "", nil, "not valid base64"},
		{"missing id", b64(32), "", nil, "must be id:"},
		{"empty id", ":" + b64(32), "", nil, "must be 1 to 32"},
		{"bad id", "k 1:" + b64(32), "", nil, "may contain only"},
		{"duplicate id", "k1:" + b64(32) + ",k1:" + b64(32), "", nil, "more than once"},
		{"empty entry", "k1:" + b64(32) + ",", "", nil, "must be id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := crypto.ParseKeys(tt.keys, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), b64(32)) || strings.Contains(err.Error(), raw) {
					t.Fatal("error message leaks key material")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID())
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) {
				t.Fatalf("ids = %v, want %v", ids, tt.wantIDs)
			}
			if _, err := crypto.NewSealer(keys); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKeyEncodeParsesBack(t *testing.T) {
	k := mustKey(t, "k7")
	keys, err := crypto.ParseKeys(k.Encode(), "")
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := mustSealer(t, k), mustSealer(t, keys...)
	id, sealed, _ := s1.Seal([]byte("x"), nil)
	if _, err := s2.Open(id, sealed, nil); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFormattingRedactsMaterial(t *testing.T) {
	k := mustKey(t, "k1")
	secret := strings.TrimPrefix(k.Encode(), "k1:")
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, struct{ Keys []crypto.Key }{[]crypto.Key{k}})
		if strings.Contains(out, secret) || !strings.Contains(out, "k1") {
			t.Fatalf("%s printed %q", format, out)
		}
	}
}

func TestNewSealerRejects(t *testing.T) {
	k := mustKey(t, "k1")
	if _, err := crypto.NewSealer(nil); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("no keys: %v", err)
	}
	if _, err := crypto.NewSealer([]crypto.Key{k, k}); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("duplicate keys: %v", err)
	}
	if _, err := crypto.NewSealer([]crypto.Key{{}}); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("zero key: %v", err)
	}
}

func FuzzParseKeys(f *testing.F) {
	f.Add("k1:"+base64.StdEncoding.EncodeToString(make([]byte, 32)), "")
	f.Add("", "AAAA")
	f.Add("a:b,c:d", "")
	f.Fuzz(func(t *testing.T, keys, key string) {
		parsed, err := crypto.ParseKeys(keys, key)
		if err != nil {
			return
		}
		if len(parsed) == 0 {
			t.Fatal("no keys and no error")
		}
		if _, err := crypto.NewSealer(parsed); err != nil {
			t.Fatalf("parsed keys rejected by NewSealer: %v", err)
		}
	})
}
