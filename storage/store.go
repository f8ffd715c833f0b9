// Package storage is the PostgreSQL side of the worker: the connection pool,
// the embedded schema migrations, and the hand-written queries that store
// telemetry together with its audit trail.
//
// Every write puts the data row and its audit_log row in one transaction and
// is idempotent on the message id, so a message delivered twice is stored
// once and the caller learns it was a duplicate. Errors leave this package as
// *ierr.Error: Unavailable (retry later), Invalid (the data can never be
// stored), Misconfigured (schema or permissions wrong) or Internal.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// Store holds the connection pool. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Session defaults applied unless the DSN sets them: no statement or lock
// wait may hold a worker (and its unacknowledged messages) for long.
var sessionDefaults = map[string]string{
	"application_name":                    "challenge-v3",
	"statement_timeout":                   "30s",
	"lock_timeout":                        "10s",
	"idle_in_transaction_session_timeout": "60s",
}

// Open connects to PostgreSQL and checks the connection with a ping.
func Open(ctx context.Context, dsn string) (*Store, error) {
	const op = "storage.Open"
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, ierr.E(ierr.Misconfigured, op, err)
	}
	for k, v := range sessionDefaults {
		if _, set := cfg.ConnConfig.RuntimeParams[k]; !set {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// Two batch writers for each of GPS and gyroscope, the photos in
		// flight (PHOTO_CONCURRENCY, 4 by default) and the dead-letter
		// path; beyond that a writer waits for a connection, which only
		// queues work PostgreSQL could not run faster on a few cores.
		cfg.MaxConns = int32(max(10, runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, translate(op, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, translate(op, err)
	}
	return &Store{pool: pool}, nil
}

// Pool is the underlying pool, for Migrate.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that a connection can be used, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	return translate("storage.Ping", s.pool.Ping(ctx))
}

// Close waits for connections in use to be released and closes the pool.
func (s *Store) Close() { s.pool.Close() }

// ErrUnreachable marks (errors.Is) an Unavailable error that came from the
// connection to PostgreSQL rather than from a statement: a refused or
// failed connect, a connection broken mid-statement, the server shutting
// down or not yet accepting connections. Every query would fail the same
// way, so the worker confirms it with a ping and pauses instead of blaming
// the message. A lock or statement time-out is Unavailable without it.
var ErrUnreachable = errors.New("database unreachable")

// translate maps a pgx error to the kind the caller acts on.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if connectionLost(pgErr.Code) {
			return ierr.E(ierr.Unavailable, op, fmt.Errorf("%w: %w", ErrUnreachable, err))
		}
		return ierr.E(pgKind(pgErr.Code), op, err)
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return ierr.E(ierr.Unavailable, op, err)
	case pgconn.SafeToRetry(err), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ierr.E(ierr.Unavailable, op, fmt.Errorf("%w: %w", ErrUnreachable, err))
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connErr) || errors.As(err, &netErr) {
		return ierr.E(ierr.Unavailable, op, fmt.Errorf("%w: %w", ErrUnreachable, err))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ierr.E(ierr.NotFound, op, err)
	}
	// A closed pool, a broken connection or an encoding bug: retrying later
	// is the safe default; the worker dead-letters after MaxDeliver.
	return ierr.E(ierr.Unavailable, op, err)
}

// connectionLost reports whether a SQLSTATE means the session, not the
// statement, failed: the server is shutting down, starting up or lost the
// connection.
func connectionLost(code string) bool {
	switch code {
	case "57P01", // admin_shutdown (a fast shutdown ends every session)
		"57P02", // crash_shutdown
		"57P03": // cannot_connect_now (starting up, in recovery)
		return true
	}
	return strings.HasPrefix(code, "08") // connection exception
}

// pgKind classifies a SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html).
func pgKind(code string) ierr.Kind {
	switch code {
	case "55P03", // lock_not_available (lock_timeout)
		"57014", // query_canceled (statement_timeout)
		"25006": // read_only_sql_transaction (a failover in progress)
		return ierr.Unavailable
	case "3D000": // invalid_catalog_name: the database does not exist
		return ierr.Misconfigured
	}
	switch code[:2] {
	case "22", // data exception (out of range, bad encoding)
		"23": // integrity constraint violation (check, not null)
		return ierr.Invalid
	case "08", // connection exception
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources: too many connections, disk full
		"57", // operator intervention: admin shutdown, cannot connect now
		"58": // system error: I/O
		return ierr.Unavailable
	case "28", // invalid authorization
		"42": // undefined table or column (migrations not applied), insufficient privilege
		return ierr.Misconfigured
	}
	return ierr.Internal
}

// storedQuery is, per type, the query telling whether a message is stored.
var storedQuery = map[models.Type]string{
	models.TypeGyroscope: `SELECT EXISTS (SELECT 1 FROM gyroscope WHERE message_id = $1)`,
	models.TypeGPS:       `SELECT EXISTS (SELECT 1 FROM gps WHERE message_id = $1)`,
	models.TypePhoto:     `SELECT EXISTS (SELECT 1 FROM photo WHERE message_id = $1)`,
}

// Stored reports whether the reading of message id, of type t, is in its
// table.
func (s *Store) Stored(ctx context.Context, t models.Type, id uuid.UUID) (bool, error) {
	q, ok := storedQuery[t]
	if !ok {
		return false, ierr.Errorf(ierr.Invalid, "storage.Stored", "unknown telemetry type %q", t)
	}
	ctx, span := tracing.StartDB(ctx, "SELECT", string(t), 0)
	var stored bool
	err := translate("storage.Stored", s.pool.QueryRow(ctx, q, messageID(id)).Scan(&stored))
	tracing.End(span, err)
	return stored, err
}
