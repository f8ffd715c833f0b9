package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// The million-row data set of the plan test and the read benchmarks.
const (
	scaleDevices   = 1000
	scaleGPS       = 1_000_000 // scaleGPS/scaleDevices fixes per device, one a minute
	scalePhotos    = 100_000
	scaleGyroscope = 100_000
	scaleFaces     = 5000
	scaleFixPeriod = time.Minute
)

// scaleBase is the timestamp of every device's first fix.
var scaleBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// scaleDevice is the id of device i of the data set.
func scaleDevice(i int) string { return fmt.Sprintf("dev-%04d", i%scaleDevices) }

// loadScaleSQL fills a migrated database (INSERT ... SELECT generate_series,
// not the worker's path: the point is the plans and the read latency).
// Fix k*1000+d belongs to device d and is taken at minute k (plus a few
// milliseconds per device): the rows of all devices interleave in the heap
// as a live fleet's do (the LATERAL reference to k keeps k the outer loop),
// and created_at grows with the heap order, as the worker's inserts make it.
// Row ids are given (OVERRIDING SYSTEM VALUE, the sequence set after): a
// million nextval calls cost seconds. loadScale drops the tables' indexes
// first and builds them again after (see there).
var loadScaleSQL = []string{
	fmt.Sprintf(`WITH devs AS MATERIALIZED (
		SELECT d, 'dev-' || lpad(d::text, 4, '0') AS device_id FROM generate_series(0, %[1]d - 1) AS d)
	INSERT INTO gps (id, message_id, device_id, latitude, longitude, recorded_at, received_at, created_at) OVERRIDING SYSTEM VALUE
	SELECT i + 1, lpad(to_hex(i), 32, '0')::uuid, device_id,
		-23.5 + d::float8 / 1e4 + k::float8 / 1e6,
		-46.6 - d::float8 / 1e4,
		at, at + interval '1 s',
		'2026-01-01T00:00:02Z'::timestamptz + i * interval '1 ms'
	FROM generate_series(0, %[2]d / %[1]d - 1) AS k
	CROSS JOIN LATERAL (SELECT d, device_id, k * %[1]d + d AS i,
		'2026-01-01T00:00:00Z'::timestamptz + k * interval '1 minute' + d * interval '37 ms' AS at FROM devs) AS dev`, scaleDevices, scaleGPS),
	// A quarter of the photos per recognition status; the matched and
	// new_face ones name one of scaleFaces faces.
	fmt.Sprintf(`WITH devs AS MATERIALIZED (
		SELECT d, 'dev-' || lpad(d::text, 4, '0') AS device_id FROM generate_series(0, %[1]d - 1) AS d)
	INSERT INTO photo (id, message_id, device_id, recorded_at, received_at, created_at, content_type, size_bytes,
		image_ciphertext, encryption_key_id, recognition_status, recognized, face_id, similarity) OVERRIDING SYSTEM VALUE
	SELECT i + 1, ('1' || lpad(to_hex(i), 31, '0'))::uuid, device_id,
		at, at + interval '1 s',
		'2026-01-01T00:00:02Z'::timestamptz + i * interval '10 ms',
		'image/jpeg', 1, '\x0000000000000000000000000000000000000000000000000000000000'::bytea, 'k1',
		(ARRAY['matched', 'new_face', 'no_face', 'disabled'])[i %% 4 + 1],
		i %% 4 = 0,
		CASE WHEN i %% 4 < 2 THEN 'face-' || (i %% %[3]d) END,
		CASE WHEN i %% 4 = 0 THEN 90.0 END
	FROM generate_series(0, %[2]d / %[1]d - 1) AS k
	CROSS JOIN LATERAL (SELECT d, device_id, k * %[1]d + d AS i,
		'2026-01-01T00:00:00Z'::timestamptz + k * interval '10 minutes' + d * interval '37 ms' AS at FROM devs) AS dev`, scaleDevices, scalePhotos, scaleFaces),
	fmt.Sprintf(`WITH devs AS MATERIALIZED (
		SELECT d, 'dev-' || lpad(d::text, 4, '0') AS device_id FROM generate_series(0, %[1]d - 1) AS d)
	INSERT INTO gyroscope (id, message_id, device_id, x, y, z, recorded_at, received_at, created_at) OVERRIDING SYSTEM VALUE
	SELECT i + 1, ('2' || lpad(to_hex(i), 31, '0'))::uuid, device_id, d, k, 0,
		at, at + interval '1 s',
		'2026-01-01T00:00:02Z'::timestamptz + i * interval '10 ms'
	FROM generate_series(0, %[2]d / %[1]d - 1) AS k
	CROSS JOIN LATERAL (SELECT d, device_id, k * %[1]d + d AS i,
		'2026-01-01T00:00:00Z'::timestamptz + k * interval '10 minutes' + d * interval '37 ms' AS at FROM devs) AS dev`, scaleDevices, scaleGyroscope),
	`SELECT setval(pg_get_serial_sequence('gps', 'id'), (SELECT max(id) FROM gps))`,
	`SELECT setval(pg_get_serial_sequence('gyroscope', 'id'), (SELECT max(id) FROM gyroscope))`,
	`SELECT setval(pg_get_serial_sequence('photo', 'id'), (SELECT max(id) FROM photo))`,
	// The summaries follow from the formulas above (aggregating a million
	// rows would take longer than loading them).
	fmt.Sprintf(`INSERT INTO device (device_id, first_seen, last_seen, gps_count, photo_count, gyroscope_count,
		last_latitude, last_longitude, last_position_at)
	SELECT 'dev-' || lpad(d::text, 4, '0'),
		'2026-01-01T00:00:00Z'::timestamptz + d * interval '37 ms',
		'2026-01-01T00:00:00Z'::timestamptz + (%[2]d / %[1]d - 1) * interval '1 minute' + d * interval '37 ms',
		%[2]d / %[1]d, %[3]d / %[1]d, %[4]d / %[1]d,
		-23.5 + d::float8 / 1e4 + (%[2]d / %[1]d - 1)::float8 / 1e6,
		-46.6 - d::float8 / 1e4,
		'2026-01-01T00:00:00Z'::timestamptz + (%[2]d / %[1]d - 1) * interval '1 minute' + d * interval '37 ms'
	FROM generate_series(0, %[1]d - 1) AS d`, scaleDevices, scaleGPS, scalePhotos, scaleGyroscope),
}

// scale is the process's copy of the data set (see scaleDB).
var scale struct {
	once sync.Once
	dsn  string
	err  error
}

// scaleDB returns the DSN of a migrated database holding the data set.
//
// It is loaded once per test process and shared by the plan test and the
// benchmarks: the database outlives the test that loaded it, and goes with
// the test binary's throwaway cluster. On a server named by
// TEST_DATABASE_URL nothing may outlive the test, so each caller loads its
// own copy there, dropped when it ends.
func scaleDB(tb testing.TB) string {
	tb.Helper()
	if os.Getenv(testenv.EnvDatabaseURL) != "" {
		start := time.Now()
		dsn := testenv.Postgres(tb)
		if err := loadScale(dsn); err != nil {
			tb.Fatal(err)
		}
		tb.Logf("data set loaded in %v", time.Since(start).Round(time.Millisecond))
		return dsn
	}
	scale.once.Do(func() {
		scale.err = errors.New("loading the data set failed in an earlier test")
		start := time.Now()
		dsn := testenv.Postgres(processLifetime{tb})
		scale.dsn, scale.err = dsn, loadScale(dsn)
		tb.Logf("data set loaded in %v", time.Since(start).Round(time.Millisecond))
	})
	if scale.err != nil {
		tb.Fatal(scale.err)
	}
	return scale.dsn
}

// processLifetime is a TB whose clean-ups never run: what it creates lives
// as long as the test process (and its cluster).
type processLifetime struct{ testing.TB }

func (processLifetime) Cleanup(func()) {}

func loadScale(dsn string) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := storage.Migrate(ctx, pool); err != nil {
		return err
	}
	// Loading into the indexes costs several times what building them
	// after does (the (device_id, recorded_at, id) ones take a million
	// inserts all over their pages): they are dropped, and built again from
	// their saved definitions, the same indexes under the same names.
	rows, err := pool.Query(ctx, `
		SELECT 'ALTER TABLE ' || c.conrelid::regclass || ' DROP CONSTRAINT ' || quote_ident(c.conname),
			'ALTER TABLE ' || c.conrelid::regclass || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
		FROM pg_constraint c
		WHERE c.conrelid IN ('gps'::regclass, 'gyroscope'::regclass, 'photo'::regclass) AND c.conindid <> 0
		UNION ALL
		SELECT 'DROP INDEX ' || i.indexrelid::regclass, pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		WHERE i.indrelid IN ('gps'::regclass, 'gyroscope'::regclass, 'photo'::regclass)
			AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`)
	if err != nil {
		return err
	}
	var drops, creates []string
	var drop, create string
	if _, err := pgx.ForEachRow(rows, []any{&drop, &create}, func() error {
		drops, creates = append(drops, drop), append(creates, create)
		return nil
	}); err != nil {
		return err
	}
	steps := drops
	steps = append(steps, loadScaleSQL...)
	steps = append(steps, "SET maintenance_work_mem = '128MB'")
	steps = append(steps, creates...)
	steps = append(steps, "ANALYZE gps", "ANALYZE gyroscope", "ANALYZE photo", "ANALYZE device")
	conn, err := pool.Acquire(ctx) // one session, for the SET
	if err != nil {
		return err
	}
	defer conn.Release()
	for _, sql := range steps {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("loading the data set: %s: %w", sql, err)
		}
	}
	return nil
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan tree.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// explained numbers the statements explain prepares.
var explained int

// explain returns the plan of sql with args, either as a custom plan (the
// argument values known to the planner, what the first executions of a
// prepared statement get) or as the generic plan PostgreSQL may switch a
// prepared statement to after five executions (pgx prepares every query).
func explain(t *testing.T, conn *pgx.Conn, sql string, args []any, generic bool) planNode {
	t.Helper()
	ctx := context.Background()
	mode := "force_custom_plan"
	if generic {
		mode = "force_generic_plan"
	}
	lits := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			lits[i] = "'" + v.Format(time.RFC3339Nano) + "'"
		case string:
			lits[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		case uuid.UUID:
			lits[i] = "'" + v.String() + "'"
		case int:
			lits[i] = strconv.Itoa(v)
		case int64:
			lits[i] = strconv.FormatInt(v, 10)
		default:
			t.Fatalf("explain: argument %d of type %T", i, a)
		}
	}
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
		t.Fatal(err)
	}
	explained++
	name := fmt.Sprintf("explained_%d", explained)
	if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+sql); err != nil {
		t.Fatalf("PREPARE %s: %v", sql, err)
	}
	execute := "EXECUTE " + name
	if len(lits) > 0 {
		execute += "(" + strings.Join(lits, ", ") + ")"
	}
	var doc []struct{ Plan planNode }
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+execute).Scan(&doc); err != nil {
		t.Fatalf("EXPLAIN %s: %v", sql, err)
	}
	if len(doc) != 1 {
		t.Fatalf("EXPLAIN %s: %d plans", sql, len(doc))
	}
	return doc[0].Plan
}

// TestReadPlansAtScale loads a million GPS fixes across 1,000 devices (and
// 100,000 photos and gyroscope readings) and checks that each query shape
// of the Reader is a range scan of the index meant for it, in both orders,
// with no Seq Scan and no Sort: the cost of a page does not grow with the
// table. Both the custom and the generic plan are checked: pgx prepares
// every statement, and PostgreSQL may switch a prepared statement to its
// generic plan after five executions.
func TestReadPlansAtScale(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The plans of the Reader's own sessions, with its settings.
	r, err := storage.OpenReader(ctx, scaleDB(t), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pc, err := storage.ReaderPool(r).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	conn := pc.Conn()

	from, to := scaleBase.Add(100*scaleFixPeriod), scaleBase.Add(400*scaleFixPeriod)
	cursor := &storage.Position{At: scaleBase.Add(250 * scaleFixPeriod), ID: 250_042}
	type shape struct {
		name, sql string
		args      []any
		indexes   []string // the index the plan must scan (one of them)
		replay    bool     // the stream replay: a BRIN bitmap scan, then a top-N sort
	}
	var shapes []shape
	list := func(name string, typ models.Type, q storage.ListQuery, indexes ...string) {
		for _, asc := range []bool{false, true} {
			q.Asc, q.Limit = asc, 100
			sql, args, err := storage.ListSQL(typ, q)
			if err != nil {
				t.Fatal(err)
			}
			shapes = append(shapes, shape{fmt.Sprintf("%s/asc=%v", name, asc), sql, args, indexes, false})
		}
	}
	list("gps all devices", models.TypeGPS, storage.ListQuery{}, "gps_recorded_id_idx")
	list("gps all devices, range", models.TypeGPS, storage.ListQuery{From: from, To: to}, "gps_recorded_id_idx")
	list("gps all devices, cursor", models.TypeGPS, storage.ListQuery{After: cursor}, "gps_recorded_id_idx")
	list("gps device", models.TypeGPS, storage.ListQuery{DeviceID: "dev-0042"}, "gps_device_recorded_id_idx")
	list("gps device, range", models.TypeGPS, storage.ListQuery{DeviceID: "dev-0042", From: from, To: to}, "gps_device_recorded_id_idx")
	list("gps device, from", models.TypeGPS, storage.ListQuery{DeviceID: "dev-0042", From: from}, "gps_device_recorded_id_idx")
	list("gps device, range and cursor", models.TypeGPS, storage.ListQuery{DeviceID: "dev-0042", From: from, To: to, After: cursor}, "gps_device_recorded_id_idx")
	list("gyroscope all devices", models.TypeGyroscope, storage.ListQuery{}, "gyroscope_recorded_id_idx")
	list("gyroscope device", models.TypeGyroscope, storage.ListQuery{DeviceID: "dev-0042"}, "gyroscope_device_recorded_id_idx")
	list("gyroscope device, range and cursor", models.TypeGyroscope, storage.ListQuery{DeviceID: "dev-0042", From: from, To: to, After: cursor}, "gyroscope_device_recorded_id_idx")
	list("photo all devices", models.TypePhoto, storage.ListQuery{}, "photo_recorded_id_idx")
	list("photo device", models.TypePhoto, storage.ListQuery{DeviceID: "dev-0042"}, "photo_device_recorded_id_idx")
	list("photo device, cursor", models.TypePhoto, storage.ListQuery{DeviceID: "dev-0042", After: cursor}, "photo_device_recorded_id_idx")
	list("photo face", models.TypePhoto, storage.ListQuery{FaceID: "face-42"}, "photo_face_recorded_id_idx")
	list("photo face, range and cursor", models.TypePhoto, storage.ListQuery{FaceID: "face-42", From: from, To: to, After: cursor}, "photo_face_recorded_id_idx")
	// A status is a quarter of the photos here: reading the time index
	// (whose order is the heap's) and skipping three rows in four may be
	// cheaper than the status index (whose order is not); either is an
	// ordered scan that stops after LIMIT+1 matches. A rare status takes
	// the status index.
	list("photo status", models.TypePhoto, storage.ListQuery{RecognitionStatus: "matched"}, "photo_status_recorded_id_idx", "photo_recorded_id_idx")
	list("photo status, range and cursor", models.TypePhoto, storage.ListQuery{RecognitionStatus: "no_face", From: from, To: to, After: cursor},
		"photo_status_recorded_id_idx", "photo_recorded_id_idx")
	for _, r := range []struct {
		name     string
		from, to time.Time
	}{{"track", time.Time{}, time.Time{}}, {"track, range", from, to}} {
		sql, args := storage.TrackSQL("dev-0042", r.from, r.to, 10000)
		shapes = append(shapes, shape{r.name, sql, args, []string{"gps_device_recorded_id_idx"}, false})
	}
	shapes = append(shapes,
		shape{"device summary", storage.DeviceSQL, []any{"dev-0042"}, []string{"photo_device_recorded_id_idx"}, false},
		shape{"devices list", storage.ListDevicesSQL, []any{"dev-0500", 101}, []string{"device_pkey"}, false})
	sql, args := storage.StoredAfterSQL(models.TypeGPS, scaleBase.Add(990*time.Second), uuid.New(), "", 1000)
	shapes = append(shapes, shape{"stream replay", sql, args, []string{"gps_created_brin"}, true})

	for _, s := range shapes {
		for _, generic := range []bool{false, true} {
			plan := explain(t, conn, s.sql, s.args, generic)
			var nodes []string
			scanned := false
			plan.walk(func(n planNode) {
				nodes = append(nodes, n.NodeType+" "+n.IndexName)
				switch n.NodeType {
				case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
					scanned = scanned || slices.Contains(s.indexes, n.IndexName) && (n.NodeType != "Bitmap Index Scan" || s.replay)
				case "Seq Scan":
					t.Errorf("%s (generic=%v): Seq Scan in %v", s.name, generic, nodes)
				case "Sort", "Incremental Sort", "Bitmap Heap Scan":
					if !s.replay {
						t.Errorf("%s (generic=%v): %s in %v", s.name, generic, n.NodeType, nodes)
					}
				}
			})
			if !scanned {
				t.Errorf("%s (generic=%v): no scan of %v: %v\n%s", s.name, generic, s.indexes, nodes, s.sql)
			}
		}
	}
}

// percentiles reports the p50 and p99 of latencies.
func percentiles(b *testing.B, latencies []time.Duration) {
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	at := func(p int) float64 {
		return float64(latencies[min(len(latencies)-1, len(latencies)*p/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(50), "p50-ms")
	b.ReportMetric(at(99), "p99-ms")
}

func scaleReader(b *testing.B) *storage.Reader {
	b.Helper()
	r, err := storage.OpenReader(context.Background(), scaleDB(b), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	return r
}

// BenchmarkListGPSPage: a page of 100 fixes of one device in a 5-hour range
// (300 fixes in it), newest first, at a million rows; the device and range
// change every iteration. The first page, then the page after a cursor.
func BenchmarkListGPSPage(b *testing.B) {
	r := scaleReader(b)
	ctx := context.Background()
	for _, paged := range []bool{false, true} {
		b.Run(fmt.Sprintf("cursor=%v", paged), func(b *testing.B) {
			var latencies []time.Duration
			i := 0
			for b.Loop() {
				from := scaleBase.Add(time.Duration(i%600) * scaleFixPeriod)
				q := storage.ListQuery{DeviceID: scaleDevice(i * 7), From: from, To: from.Add(300 * scaleFixPeriod), Limit: 100}
				if paged {
					q.After = &storage.Position{At: from.Add(200 * scaleFixPeriod), ID: 1 << 40}
				}
				start := time.Now()
				page, err := r.ListGPS(ctx, q)
				latencies = append(latencies, time.Since(start))
				if err != nil || len(page.Items) != 100 {
					b.Fatalf("%d items, %v", len(page.Items), err)
				}
				i++
			}
			percentiles(b, latencies)
		})
	}
}

// BenchmarkTrack: one device's whole track (1,000 fixes) at a million rows.
func BenchmarkTrack(b *testing.B) {
	r := scaleReader(b)
	ctx := context.Background()
	var latencies []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		pts, truncated, err := r.Track(ctx, scaleDevice(i*7), time.Time{}, time.Time{}, 10000)
		latencies = append(latencies, time.Since(start))
		if err != nil || truncated || len(pts) != scaleGPS/scaleDevices {
			b.Fatalf("%d points (truncated %v), %v", len(pts), truncated, err)
		}
		i++
	}
	percentiles(b, latencies)
}
