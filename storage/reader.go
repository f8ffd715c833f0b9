package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Reader runs the read API's queries on its own pool (separate from the
// worker's Store), every session with statement_timeout set,
// application_name "challenge-v3-read". It is safe for concurrent use.
//
// Every list and track query is a range scan of one of the keyset indexes
// of migration 0002 in either direction (see listSQL); the million-row plan
// test in read_scale_test.go holds them to it.
type Reader struct {
	pool *pgxpool.Pool
}

// Reader pool defaults. The read API shares the database with the worker:
// a small pool bounds what a burst of reads can take from it, and a read
// that waits for a lock (a migration's) gives up quickly instead of piling
// up the pool behind it.
//
// random_page_cost is 1.1 (SSD storage or a cached working set) instead of
// PostgreSQL's 4 (spinning disks). At 4 the planner answers "one device,
// newest first, LIMIT 101" with a bitmap scan of every fix of the device
// and a sort when it expects few of them: cheap when the estimate is right,
// but its cost grows with the device's history, whereas the ordered index
// scan stops after LIMIT+1 rows whatever the estimate. At 1.1 every list and
// track query is that index scan (TestReadPlansAtScale); a DSN setting wins.
const (
	readerApplicationName = "challenge-v3-read"
	readerMaxConns        = 8
	readerLockTimeout     = time.Second
	readerRandomPageCost  = "1.1"
)

// OpenReader builds the read pool. It does not wait for the database: the
// API starts, and ingests, while PostgreSQL is down; Ping reports it, and
// each query fails Unavailable until it is back. statementTimeout (> 0)
// bounds every statement; pool_max_conns in the DSN overrides the default
// of 8 connections, and application_name, lock_timeout or random_page_cost
// in the DSN win.
func OpenReader(ctx context.Context, dsn string, statementTimeout time.Duration) (*Reader, error) {
	const op = "storage.OpenReader"
	if statementTimeout <= 0 {
		return nil, ierr.Errorf(ierr.Misconfigured, op, "statement timeout %v: must be positive", statementTimeout)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, ierr.E(ierr.Misconfigured, op, err)
	}
	params := cfg.ConnConfig.RuntimeParams
	params["statement_timeout"] = millis(statementTimeout)
	defaults := map[string]string{
		"application_name": readerApplicationName,
		"lock_timeout":     millis(min(readerLockTimeout, statementTimeout)),
		"random_page_cost": readerRandomPageCost,
	}
	for k, v := range defaults {
		if _, set := params[k]; !set {
			params[k] = v
		}
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = readerMaxConns
	}
	cfg.ConnConfig.Tracer = queryTracer{}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, translate(op, err)
	}
	return &Reader{pool: pool}, nil
}

// millis renders d as a PostgreSQL duration setting, rounded up to a whole
// millisecond (the unit of statement_timeout; 0 would mean "no limit").
func millis(d time.Duration) string {
	return fmt.Sprintf("%dms", (d+time.Millisecond-1)/time.Millisecond)
}

// Ping checks that a connection can be used, for the API's readiness.
func (r *Reader) Ping(ctx context.Context) error {
	return translate("storage.Reader.Ping", r.pool.Ping(ctx))
}

// Close waits for queries in progress and closes the pool.
func (r *Reader) Close() { r.pool.Close() }

// Position is a keyset position: the reading's timestamp and its row id
// (tie-break). At must come back exactly as a Page's Next gave it
// (microseconds, PostgreSQL's precision).
type Position struct {
	At time.Time
	ID int64
}

// ListQuery is one page request of a list route.
type ListQuery struct {
	DeviceID          string    // "" = all devices (already normalised by the caller)
	From, To          time.Time // zero = unbounded; both inclusive, on recorded_at
	Asc               bool      // false = newest first (default)
	Limit             int       // 1..1000, validated by the caller
	After             *Position // nil = first page; the page starts strictly after it in the chosen order
	FaceID            string    // photos only; "" = any
	RecognitionStatus string    // photos only; "" = any
}

// Page is one page of a list; Next is nil when this is the last page.
// Items is never nil (an empty page encodes as []).
type Page[T any] struct {
	Items []T
	Next  *Position
}

// SealedImage is a stored photo's image as the worker sealed it: the
// caller opens Ciphertext with the key KeyID and MessageID as additional
// data.
type SealedImage struct {
	RowID       int64
	MessageID   uuid.UUID
	DeviceID    string
	ContentType string
	KeyID       string
	Ciphertext  []byte
}
