package config

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/crypto"
)

// Read is the read API's part of the API configuration (SPEC §8). Every
// setting is optional: without DatabaseURL the api serves ingest only, and
// without EncryptionKeys it serves everything but photo images.
type Read struct {
	// DatabaseURL is the PostgreSQL DSN of the read queries, ideally a user
	// of the challenge_reader role (SELECT, INSERT on audit_log). "" turns
	// the read routes off. Never log it.
	DatabaseURL string
	// StatementTimeout bounds every read query (PostgreSQL
	// statement_timeout of the read pool's sessions).
	StatementTimeout time.Duration
	// PoolMaxConns caps the read pool, so a burst of reads cannot take every
	// connection the database allows.
	PoolMaxConns int
	// CORSAllowedOrigins are the browser origins allowed cross-origin, in
	// their serialised form (scheme://host[:port], lower case), or "*" for
	// any. Empty: nothing is allowed cross-origin.
	CORSAllowedOrigins []string
	// EncryptionKeys open sealed photos for GET /telemetry/photo/{id}/image
	// (the same ENCRYPTION_KEYS as the worker's, rotation included). Empty:
	// that route answers 503.
	EncryptionKeys []crypto.Key
}

// Defaults of the read API.
const (
	DefaultReadStatementTimeout = 5 * time.Second
	DefaultReadPoolMaxConns     = 8
	maxReadPoolConns            = 1000
)

// read reads the read API's variables.
func (e *env) read() Read {
	r := Read{
		DatabaseURL:        e.optionalDatabaseURL("DATABASE_URL"),
		StatementTimeout:   e.duration("READ_STATEMENT_TIMEOUT", DefaultReadStatementTimeout, 10*time.Millisecond),
		PoolMaxConns:       e.int("READ_POOL_MAX_CONNS", DefaultReadPoolMaxConns, 1, maxReadPoolConns),
		CORSAllowedOrigins: e.origins("CORS_ALLOWED_ORIGINS"),
	}
	encKeys, encKey := e.get("ENCRYPTION_KEYS"), e.get("ENCRYPTION_KEY")
	if strings.TrimSpace(encKeys) != "" || strings.TrimSpace(encKey) != "" {
		keys, err := crypto.ParseKeys(encKeys, encKey)
		if err != nil {
			e.errs = append(e.errs, err) // already names the variable, never the key
		}
		r.EncryptionKeys = keys
	}
	return r
}

// check applies the rules across the read settings. The pool settings
// matter only with a database, so a configuration built by hand without
// one (tests, ingest-only) needs none of them.
func (r Read) check(fail func(name, format string, args ...any)) {
	if r.DatabaseURL != "" {
		if r.StatementTimeout <= 0 {
			fail("READ_STATEMENT_TIMEOUT", "must be positive")
		}
		if r.PoolMaxConns < 1 || r.PoolMaxConns > maxReadPoolConns {
			fail("READ_POOL_MAX_CONNS", "must be between 1 and %d", maxReadPoolConns)
		}
	}
	for _, o := range r.CORSAllowedOrigins {
		if _, err := parseOrigin(o); err != "" {
			fail("CORS_ALLOWED_ORIGINS", "%s", err)
			break
		}
	}
	if len(r.EncryptionKeys) > 0 {
		if _, err := crypto.NewSealer(r.EncryptionKeys); err != nil {
			fail("ENCRYPTION_KEYS", "%v", err)
		}
	}
}

// PoolDSN is DatabaseURL with the pool size applied (pgx's pool_max_conns),
// unless the DSN already sets one.
func (r Read) PoolDSN() string {
	dsn := r.DatabaseURL
	if dsn == "" || strings.Contains(dsn, "pool_max_conns") {
		return dsn
	}
	n := strconv.Itoa(r.PoolMaxConns)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "pool_max_conns=" + n
	}
	return dsn + " pool_max_conns=" + n
}

// optionalDatabaseURL reads a PostgreSQL DSN that may be unset.
func (e *env) optionalDatabaseURL(name string) string {
	v := e.str(name, "")
	if v != "" {
		if _, err := pgx.ParseConfig(v); err != nil {
			// The parse error may quote the DSN; name the variable only.
			e.fail(name, "is not a valid PostgreSQL URL or key=value connection string")
		}
	}
	return v
}

// origins reads a comma-separated list of browser origins or "*".
func (e *env) origins(name string) []string {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for i, part := range strings.Split(v, ",") {
		o, msg := parseOrigin(strings.TrimSpace(part))
		if msg != "" {
			e.fail(name, "entry %d: %s", i+1, msg)
			continue
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

// parseOrigin checks one allowed origin and returns it as browsers send it
// in the Origin header (RFC 6454: scheme and host in lower case, no path),
// so the comparison with the header can be exact.
func parseOrigin(s string) (string, string) {
	if s == "*" {
		return s, ""
	}
	const want = "must be * or an origin such as https://app.example.com or http://localhost:3000"
	u, err := url.Parse(s)
	if s == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return "", want + ", got " + strconv.Quote(s)
	}
	if u.Path != "" {
		return "", "an origin has no path (drop " + strconv.Quote(u.Path) + "), got " + strconv.Quote(s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "port must be between 1 and 65535, got " + strconv.Quote(s)
		}
		// A browser omits the scheme's default port from Origin.
		if u.Scheme == "http" && p == "80" || u.Scheme == "https" && p == "443" {
			u.Host = strings.TrimSuffix(u.Host, ":"+p)
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), ""
}
