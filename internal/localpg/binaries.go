package localpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
)

type binaries struct {
	initdb, postgres string
}

// findBinaries looks for initdb and postgres in dir, else in PATH, else in
// the usual install locations (highest version first).
func findBinaries(dir string) (binaries, error) {
	if dir != "" {
		return binariesIn(dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := binariesIn(filepath.Dir(real)); err == nil {
				return b, nil
			}
		}
		if q, err := exec.LookPath("postgres"); err == nil {
			return binaries{initdb: p, postgres: q}, nil
		}
	}
	candidates, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(candidates, func(a, b string) int { return versionOf(b) - versionOf(a) })
	candidates = append(candidates, "/usr/local/pgsql/bin", "/usr/pgsql-15/bin")
	for _, d := range candidates {
		if b, err := binariesIn(d); err == nil {
			return b, nil
		}
	}
	return binaries{}, errors.New("localpg: PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; " +
		"install them (e.g. apt-get install postgresql-15) or set DATABASE_URL / TEST_DATABASE_URL to an existing server")
}

// FindTool returns the path of a PostgreSQL program (psql, pg_dump, …)
// installed beside the server binaries Start would use.
func FindTool(name string) (string, error) {
	b, err := findBinaries("")
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(b.initdb)
	if real, err := filepath.EvalSymlinks(b.initdb); err == nil {
		dir = filepath.Dir(real)
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("localpg: %s not found beside %s", name, b.initdb)
	}
	return p, nil
}

func binariesIn(dir string) (binaries, error) {
	b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
	for _, p := range []string{b.initdb, b.postgres} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return binaries{}, fmt.Errorf("localpg: %s is not an executable", p)
		}
	}
	return b, nil
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}
