package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/loadgen"
	"github.com/challenge-v3/challenge-v3/models"
)

// stackSettings is the environment of an API and a worker as an operator
// would write it, shared by the e2e section (which runs them in-process,
// configured through config.LoadAPI / LoadWorker with it) and the memory
// section (which runs the binaries with it): both measure the deployed
// defaults, with only what a benchmark must change.
type stackSettings struct {
	natsURL, dsn string
	apiSecret    string
	syncAlways   bool
}

func newStackSettings(natsURL, dsn string) (stackSettings, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return stackSettings{}, err
	}
	return stackSettings{natsURL: natsURL, dsn: dsn, apiSecret: hex.EncodeToString(secret)}, nil
}

// apiEnv: every feature on (auth, validation, metrics, request ids, the
// access log at the default level), rate limiting off as in issue 9's
// reference measurements (one client IP sends everything).
func (s stackSettings) apiEnv() map[string]string {
	return map[string]string{
		"HTTP_ADDR":      "127.0.0.1:0",
		"ADMIN_ADDR":     "127.0.0.1:0",
		"NATS_URL":       s.natsURL,
		"API_KEYS":       "bench:" + s.apiSecret + ":ingest",
		"RATE_LIMIT_RPS": "0",
	}
}

// workerEnv: the defaults (batch size, linger), photos without face
// recognition (the sections send GPS only) and a fresh sealing key.
func (s stackSettings) workerEnv() (map[string]string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return map[string]string{
		"ADMIN_ADDR":     "127.0.0.1:0",
		"NATS_URL":       s.natsURL,
		"DATABASE_URL":   s.dsn,
		"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(key),
	}, nil
}

// openLoopInFlight caps the requests in flight of an open-loop run. It is
// well above Options.Connections: an arrival that finds every slot busy is
// dropped, not measured, so a cap as low as the closed loop's connections
// would drop the requests queued behind a stall (a GC, a checkpoint, a
// neighbour's compile on a shared machine), exactly the ones whose latency
// the open loop is there to show. At half the sustained rate 1,024 slots
// absorb a stall of well over 100 ms.
const openLoopInFlight = 1024

// inFlight is the loadgen concurrency for a run at rate (0: closed loop).
func inFlight(env *Env, rate float64) int {
	if rate > 0 {
		return max(env.Connections, openLoopInFlight)
	}
	return env.Connections
}

// envOf answers from m only: a benchmark must not pick up the caller's
// LOG_LEVEL or AWS settings.
func envOf(m map[string]string) config.Getenv {
	return func(name string) string { return m[name] }
}

// gpsSource returns the requests of a GPS load: valid bodies from 512
// devices, each request carrying the API key. The timestamps are the
// section's start, so they stay valid (not in the future) however long the
// run.
func gpsSource(secret string) loadgen.Source {
	const devices = 512
	now := time.Now().UTC().Format(time.RFC3339Nano)
	bodies := make([][]byte, devices)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"device_id":"00:0a:95:9d:%02x:%02x","timestamp":%q,"latitude":%.6f,"longitude":%.6f}`,
			i>>8, i&0xff, now, -23.55+float64(i)/1e4, -46.63-float64(i)/1e4)
	}
	header := http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {secret}}
	return func(i int64) loadgen.Request {
		return loadgen.Request{Method: http.MethodPost, Path: "/telemetry/gps", Header: header, Body: bodies[i%devices], Readings: 1}
	}
}

// acceptedID is the id of a 202 answer's body ("" if it has none).
func acceptedID(body []byte) string {
	var a struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &a) != nil {
		return ""
	}
	return a.ID
}

// ledger keeps every id answered 202 in a section, so the section can check
// that exactly those readings were stored, and, for the requests of a
// latency round, the moment each was due.
type ledger struct {
	mu  sync.Mutex
	ids []string
	due map[string]time.Time // id → due time, during a latency round
}

// onResponse is a loadgen.Config.OnResponse.
func (l *ledger) onResponse(_ loadgen.Request, status int, body []byte, due time.Time) {
	if status != http.StatusAccepted {
		return
	}
	id := acceptedID(body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
	if l.due != nil {
		l.due[id] = due
	}
}

// startRound starts noting due times.
func (l *ledger) startRound() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.due = map[string]time.Time{}
}

// endRound stops noting due times and returns those of the round.
func (l *ledger) endRound() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	due := l.due
	l.due = nil
	return due
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

func (l *ledger) accepted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// commitWatcher notes when each GPS reading was committed: the worker
// publishes an announcement on events.stored.gps right after the
// transaction holding the row commits (worker/announce.go), with the id the
// API answered in its 202. The time it arrives here is the commit plus one
// loopback hop (well under a millisecond unloaded), which is closer than
// the row's created_at: that is now() of the inserting transaction, i.e.
// its start, before the batch was even written.
type commitWatcher struct {
	nc        *nats.Conn
	seen      atomic.Int64
	recording atomic.Bool
	mu        sync.Mutex
	at        map[string]time.Time
}

func watchCommits(natsURL string) (*commitWatcher, error) {
	nc, err := nats.Connect(natsURL, nats.Name("bench-commit-watcher"))
	if err != nil {
		return nil, fmt.Errorf("bench: commit watcher: %w", err)
	}
	w := &commitWatcher{nc: nc, at: map[string]time.Time{}}
	sub, err := nc.Subscribe(models.TypeGPS.StoredSubject(), func(m *nats.Msg) {
		now := time.Now()
		w.seen.Add(1)
		if !w.recording.Load() {
			return
		}
		id := m.Header.Get(models.StoredReadingIDHeader)
		w.mu.Lock()
		w.at[id] = now
		w.mu.Unlock()
	})
	if err == nil {
		// Never drop an announcement for being slow: the bench's memory is
		// bounded by the run's count of readings anyway.
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bench: commit watcher: %w", err)
	}
	return w, nil
}

func (w *commitWatcher) close() { w.nc.Close() }

// latencies returns, for each id of due, the time from its due moment to
// its commit, and how many of them were never announced.
func (w *commitWatcher) latencies(due map[string]time.Time) (*loadgen.Histogram, int) {
	h := loadgen.NewHistogram()
	missing := 0
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, d := range due {
		at, ok := w.at[id]
		if !ok {
			missing++
			continue
		}
		h.Record(at.Sub(d))
	}
	return h, missing
}

// countGPS is the number of GPS rows.
func gpsRows(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM gps").Scan(&n)
	return n, err
}

// waitStored waits until the database holds want GPS rows, for at most
// limit, and returns the last count.
func waitStored(ctx context.Context, db *pgxpool.Pool, want int64, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := gpsRows(ctx, db)
		if err != nil || n >= want || time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkStored fails unless the GPS table holds exactly the readings
// answered 202: as many rows as ids, and every id among them.
func checkStored(ctx context.Context, db *pgxpool.Pool, ids []string) error {
	total, err := gpsRows(ctx, db)
	if err != nil {
		return err
	}
	var found int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM gps WHERE message_id = ANY($1::uuid[])", ids).Scan(&found); err != nil {
		return err
	}
	if total != int64(len(ids)) || found != int64(len(ids)) {
		return fmt.Errorf("bench: %d readings accepted (202), %d rows stored, %d of the accepted ids among them", len(ids), total, found)
	}
	return nil
}

// ms is d in milliseconds.
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// statusSummary prints a loadgen result's non-2xx statuses and errors, for
// a note or an error ("" when there are none).
func statusSummary(r loadgen.Result) string {
	var parts []string
	for code, n := range r.Status {
		if code/100 != 2 {
			parts = append(parts, fmt.Sprintf("%d×%d", n, code))
		}
	}
	for kind, n := range r.Errors {
		parts = append(parts, fmt.Sprintf("%d×%s", n, kind))
	}
	sort.Strings(parts)
	if r.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("%d dropped", r.Dropped))
	}
	return strings.Join(parts, ", ")
}
