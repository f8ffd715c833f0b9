package devstack

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
)

// DevKeyName is the name of the generated API key, as it appears in logs
// and audit rows.
const DevKeyName = "dev"

// keys are the secrets the dev stack gives the binaries.
type keys struct {
	apiKeys   string // API_KEYS value; "" = the environment's
	devSecret string // the generated key's secret; "" when API_KEYS came from the environment
	// encryptionKeys is the ENCRYPTION_KEYS value both binaries get: the
	// environment's keys first, then every key kept in KeyFile.
	encryptionKeys string
	keyIDs         string // their ids, active first, for the log
}

// KeyFile, under the state directory, keeps every photo key the dev stack
// has used, in ENCRYPTION_KEYS form ("id:<base64>,…", active first; mode
// 0600). A file written before keys were merged holds one bare key, the
// ENCRYPTION_KEY shorthand's "default".
const KeyFile = "encryption.key"

// loadKeys returns the dev API key and the photo encryption keys, keeping
// them under dir: a key that changed between runs would leave the earlier
// photos undecryptable and the printed curl line stale. API_KEYS set in the
// environment wins and is not stored; photo keys set there are merged into
// KeyFile (see photoKeys).
func loadKeys(dir string, getenv config.Getenv) (keys, error) {
	var k keys
	if getenv("API_KEYS") == "" {
		secret, err := persistedSecret(filepath.Join(dir, "dev-api-key"), func() (string, error) {
			return randomHex(20)
		})
		if err != nil {
			return keys{}, err
		}
		k.devSecret = secret
		k.apiKeys = DevKeyName + ":" + secret + ":ingest+read"
	}
	ring, err := photoKeys(filepath.Join(dir, KeyFile), getenv("ENCRYPTION_KEYS"), getenv("ENCRYPTION_KEY"))
	if err != nil {
		return keys{}, err
	}
	enc, ids := make([]string, len(ring)), make([]string, len(ring))
	for i, key := range ring {
		enc[i], ids[i] = key.Encode(), key.ID()
	}
	k.encryptionKeys, k.keyIDs = strings.Join(enc, ","), strings.Join(ids, ",")
	return k, nil
}

// photoKeys returns the photo keys of this run and keeps them at path: the
// keys given in the environment (ENCRYPTION_KEYS or ENCRYPTION_KEY) first,
// the first of them active, then every key kept at path that the
// environment does not name; with neither, a generated "default" key. A key
// given once therefore stays: a later plain `make run` still opens the
// photos sealed under it, and keeps sealing with it while it is the active
// one. A key id the environment gives with other material than the kept
// key of that id is refused: photos sealed under the kept one would no
// longer open.
func photoKeys(path, envKeys, envKey string) ([]crypto.Key, error) {
	kept, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	var ring []crypto.Key
	if strings.TrimSpace(envKeys) != "" || strings.TrimSpace(envKey) != "" {
		if ring, err = crypto.ParseKeys(envKeys, envKey); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
	}
	given := map[string]crypto.Key{}
	for _, k := range ring {
		given[k.ID()] = k
	}
	for _, k := range kept {
		g, ok := given[k.ID()]
		switch {
		case !ok:
			ring = append(ring, k)
		case g.Encode() != k.Encode():
			return nil, fmt.Errorf("devstack: the environment's photo key %q is not the key %q kept in %s, which photos may be sealed under; "+
				"give the new key another id (ENCRYPTION_KEYS=new:<base64>) so both open, or delete %s if those photos may be lost",
				k.ID(), k.ID(), path, path)
		}
	}
	if len(ring) == 0 {
		k, err := crypto.GenerateKey(crypto.DefaultKeyID)
		if err != nil {
			return nil, fmt.Errorf("devstack: generate a photo key: %w", err)
		}
		ring = []crypto.Key{k}
	}
	if !sameKeys(ring, kept) {
		if err := writeKeyFile(path, ring); err != nil {
			return nil, err
		}
	}
	return ring, nil
}

// withPhotoKeys answers ENCRYPTION_KEYS with keys, the merged keys of
// loadKeys, and ENCRYPTION_KEY with nothing (it is among them): both
// binaries then open every photo any run has sealed.
func withPhotoKeys(base config.Getenv, keys string) config.Getenv {
	return func(name string) string {
		switch name {
		case "ENCRYPTION_KEYS":
			return keys
		case "ENCRYPTION_KEY":
			return ""
		}
		return base(name)
	}
}

// readKeyFile returns the keys kept at path; none when there is no file.
func readKeyFile(path string) ([]crypto.Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return nil, nil
	}
	var ks []crypto.Key
	if strings.Contains(v, ":") {
		ks, err = crypto.ParseKeys(v, "")
	} else {
		ks, err = crypto.ParseKeys("", v) // one bare key, as the dev stack kept it before
	}
	if err != nil {
		return nil, fmt.Errorf("devstack: %s: %w", path, err)
	}
	return ks, nil
}

// writeKeyFile replaces the file at path with ks, readable by its owner
// only (os.CreateTemp makes it 0600); a crash leaves the old file or the
// new one, never half of one.
func writeKeyFile(path string, ks []crypto.Key) error {
	enc := make([]string, len(ks))
	for i, k := range ks {
		enc[i] = k.Encode()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	defer os.Remove(f.Name()) // nothing left to remove once renamed
	_, err = f.WriteString(strings.Join(enc, ",") + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("devstack: keep the photo keys: %w", err)
	}
	return nil
}

func sameKeys(a, b []crypto.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Encode() != b[i].Encode() {
			return false
		}
	}
	return true
}

// persistedSecret reads the secret stored at path, or makes one with gen and
// stores it there (mode 0600).
func persistedSecret(path string, gen func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("devstack: %w", err)
	}
	s, err := gen()
	if err != nil {
		return "", fmt.Errorf("devstack: generate %s: %w", filepath.Base(path), err)
	}
	// O_EXCL: two stacks started at once must not each write their own key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return persistedSecret(path, gen)
	}
	if err != nil {
		return "", fmt.Errorf("devstack: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("devstack: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("devstack: %w", err)
	}
	return s, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
