package localpg

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSharedDir is where a persistent cluster goes when the server's OS
// user cannot reach Options.Dir (see Options.SharedDir).
const DefaultSharedDir = "/var/lib/challenge-v3"

// originFile, in a relocated cluster's directory, names the Dir it serves:
// an operator sees whose it is, and Start recognises its own.
const originFile = "ORIGIN"

// persistentRoot returns the directory a persistent cluster lives in: Dir
// itself, or, when the server runs as another OS user who cannot reach Dir
// (root running from a checkout in /root, mode 0700), a directory under
// SharedDir that Dir links to. The state then survives restarts as it
// would in Dir, and `rm -rf` of the directory holding Dir (make clean)
// still starts the next run afresh: a missing link means the cluster it
// pointed to was discarded.
func persistentRoot(opts Options, owner *osUser) (string, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("localpg: %s links to a cluster directory that is gone (%w); remove the link to start afresh", dir, err)
		}
		return target, nil
	}
	if d, _ := owner.unreachable(dir); d == "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("localpg: %w", err)
		}
		return dir, nil
	}
	return relocate(dir, opts.SharedDir)
}

// relocate moves the cluster of dir to sharedDir/<hash of dir> and leaves
// a symlink at dir.
func relocate(dir, sharedDir string) (string, error) {
	if sharedDir == "" {
		sharedDir = DefaultSharedDir
	}
	sum := sha256.Sum256([]byte(dir))
	target := filepath.Join(sharedDir, hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(sharedDir, 0o755); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	// Every user traverses it, whatever the umask; what is inside is the
	// server user's (data directories are 0700).
	if err := os.Chmod(sharedDir, 0o755); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if err := discardOrphan(target, dir); err != nil {
		return "", err
	}

	switch entries, err := os.ReadDir(dir); {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(target, 0o755); err != nil {
			return "", fmt.Errorf("localpg: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("localpg: %w", err)
	case !holdsCluster(entries):
		// What a run that failed for want of reach left behind: nothing to
		// keep.
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("localpg: %w", err)
		}
		if err := os.Mkdir(target, 0o755); err != nil {
			return "", fmt.Errorf("localpg: %w", err)
		}
	default:
		// A cluster made while dir was reachable: move it (same file system
		// only; a copy of a cluster is the operator's call).
		if err := os.Rename(dir, target); err != nil {
			return "", fmt.Errorf("localpg: the server's OS user cannot reach the cluster in %s, and moving it to %s failed (%w); move it there yourself and leave a symlink at %s",
				dir, target, err, dir)
		}
	}
	if err := os.WriteFile(filepath.Join(target, originFile), []byte(dir+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if err := os.Symlink(target, dir); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	return target, nil
}

// discardOrphan removes target when it is the cluster of dir whose link
// has been deleted; anything else there is left alone and reported.
func discardOrphan(target, dir string) error {
	b, err := os.ReadFile(filepath.Join(target, originFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("localpg: %s exists but is not a cluster this package made for %s; remove it", target, dir)
	}
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if strings.TrimSpace(string(b)) != dir {
		return fmt.Errorf("localpg: %s holds the cluster of %s, not of %s; remove it", target, strings.TrimSpace(string(b)), dir)
	}
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("localpg: remove the discarded cluster %s: %w", target, err)
	}
	return nil
}

func holdsCluster(entries []os.DirEntry) bool {
	for _, e := range entries {
		if e.Name() == "data" {
			return true
		}
	}
	return false
}
