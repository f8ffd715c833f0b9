package devstack

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/challenge-v3/challenge-v3/config"
)

// DevKeyName is the name of the generated API key, as it appears in logs
// and audit rows.
const DevKeyName = "dev"

// keys are the secrets the dev stack gives the binaries.
type keys struct {
	apiKeys       string // API_KEYS value; "" = the environment's
	devSecret     string // the generated key's secret; "" when API_KEYS came from the environment
	encryptionKey string // ENCRYPTION_KEY value; "" = the environment's
}

// loadKeys returns the dev API key and the photo encryption key, generating
// each on first use and keeping it under dir: a key that changed between
// runs would leave the earlier photos undecryptable and the printed curl
// line stale. Values set in the environment win and are not stored.
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
	if getenv("ENCRYPTION_KEY") == "" && getenv("ENCRYPTION_KEYS") == "" {
		key, err := persistedSecret(filepath.Join(dir, "encryption.key"), func() (string, error) {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return "", err
			}
			return base64.StdEncoding.EncodeToString(b), nil
		})
		if err != nil {
			return keys{}, err
		}
		k.encryptionKey = key
	}
	return k, nil
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
