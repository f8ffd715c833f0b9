package storage_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newStore opens a migrated store on a fresh database.
func newStore(t testing.TB) (*storage.Store, string) {
	t.Helper()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := storage.Migrate(ctx, st.Pool()); err != nil {
		t.Fatal(err)
	}
	return st, dsn
}

func count(t testing.TB, st *storage.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// orphans counts data rows without their audit row and audit rows without
// their data row; it must always be 0.
func orphans(t testing.TB, st *storage.Store) int {
	t.Helper()
	n := 0
	for _, table := range []string{"gps", "gyroscope", "photo"} {
		n += count(t, st, fmt.Sprintf(`SELECT count(*) FROM %[1]s d
			LEFT JOIN audit_log a ON a.message_id = d.message_id AND a.action = '%[1]s.stored'
			WHERE a.id IS NULL OR a.resource_id <> d.id::text`, table))
		n += count(t, st, fmt.Sprintf(`SELECT count(*) FROM audit_log a
			LEFT JOIN %[1]s d ON d.message_id = a.message_id
			WHERE a.action = '%[1]s.stored' AND d.id IS NULL`, table))
	}
	return n
}

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func meta(i int) models.Meta {
	return models.Meta{
		MessageID:  uuid.Must(uuid.NewV7()),
		Actor:      "fleet-app",
		ReceivedAt: t0.Add(time.Duration(i) * time.Second),
		DeviceID:   "00:0a:95:9d:68:16",
		RecordedAt: t0.Add(time.Duration(i)*time.Second - 500*time.Millisecond),
	}
}

func gpsBatch(n int) []models.GPS {
	b := make([]models.GPS, n)
	for i := range b {
		b[i] = models.GPS{Meta: meta(i), Latitude: -23.55052 + float64(i)/1e5, Longitude: -46.633308}
	}
	return b
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate pools, as separate worker processes would have.
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer pool.Close()
			errs <- storage.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	st, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n := count(t, st, `SELECT count(*) FROM schema_migrations WHERE version = 1 AND name = '0001_init'`); n != 1 {
		t.Fatalf("schema_migrations rows for 0001 = %d, want 1", n)
	}
	if err := storage.Migrate(ctx, st.Pool()); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if n := count(t, st, `SELECT count(*) FROM schema_migrations`); n != 2 {
		t.Fatalf("schema_migrations rows after a second run = %d, want 2 (one per migration)", n)
	}
	// The contract's indexes exist.
	for _, idx := range []string{"gps_device_recorded_id_idx", "gyroscope_device_recorded_id_idx", "photo_device_recorded_id_idx",
		"audit_log_occurred_at_idx", "audit_log_resource_idx", "audit_log_message_action_key",
		"gps_message_id_key", "gyroscope_message_id_key", "photo_message_id_key"} {
		if count(t, st, `SELECT count(*) FROM pg_indexes WHERE indexname = $1`, idx) != 1 {
			t.Errorf("index %s missing", idx)
		}
	}
}

func TestInsertGPSBatchIsIdempotent(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	batch := gpsBatch(5)
	batch[2].Latitude, batch[2].Longitude = 0, 0 // zero is a valid coordinate
	batch = append(batch, batch[1])              // the same message twice in one batch

	inserted, err := st.InsertGPS(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(inserted) != 5 {
		t.Fatalf("inserted %d, want 5", len(inserted))
	}
	// A redelivered batch overlapping the first: only the new message goes in.
	again := append(gpsBatch(1), batch[0], batch[3])
	inserted, err = st.InsertGPS(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if len(inserted) != 1 || inserted[0].ID != again[0].MessageID {
		t.Fatalf("second batch inserted %v, want only %s", inserted, again[0].MessageID)
	}
	if n := count(t, st, `SELECT count(*) FROM gps`); n != 6 {
		t.Fatalf("gps rows = %d, want 6", n)
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE action = 'gps.stored' AND resource = 'gps' AND actor = 'fleet-app'`); n != 6 {
		t.Fatalf("audit rows = %d, want 6", n)
	}
	if n := orphans(t, st); n != 0 {
		t.Fatalf("%d data rows without audit row or audit rows without data row", n)
	}
	var lat, lon float64
	var device string
	var recorded, received time.Time
	var details map[string]any
	err = st.Pool().QueryRow(ctx, `SELECT g.latitude, g.longitude, g.device_id, g.recorded_at, g.received_at, a.details
		FROM gps g JOIN audit_log a USING (message_id) WHERE message_id = $1`, batch[2].MessageID).
		Scan(&lat, &lon, &device, &recorded, &received, &details)
	if err != nil {
		t.Fatal(err)
	}
	if lat != 0 || lon != 0 || device != batch[2].DeviceID || !recorded.Equal(batch[2].RecordedAt) || !received.Equal(batch[2].ReceivedAt) {
		t.Fatalf("stored %v %v %q %v %v, want %+v", lat, lon, device, recorded, received, batch[2])
	}
	if details["device_id"] != batch[2].DeviceID || len(details) != 1 {
		t.Fatalf("audit details = %v", details)
	}
}

func TestInsertGyroscope(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	g := models.Gyroscope{Meta: meta(0), X: 0.98, Y: -0.45, Z: 0}
	for i := range 2 {
		inserted, err := st.InsertGyroscope(ctx, []models.Gyroscope{g})
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 - i; len(inserted) != want {
			t.Fatalf("delivery %d inserted %d rows, want %d", i+1, len(inserted), want)
		}
	}
	var x, y, z float64
	if err := st.Pool().QueryRow(ctx, `SELECT x, y, z FROM gyroscope WHERE message_id = $1`, g.MessageID).Scan(&x, &y, &z); err != nil {
		t.Fatal(err)
	}
	if x != 0.98 || y != -0.45 || z != 0 {
		t.Fatalf("stored %v %v %v", x, y, z)
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE action = 'gyroscope.stored' AND message_id = $1`, g.MessageID); n != 1 {
		t.Fatalf("audit rows = %d", n)
	}
}

func TestSchemaRefusesWhatValidationRefuses(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	sim := 99.5
	good := storage.Photo{Meta: meta(0), ContentType: models.ContentTypeJPEG, SizeBytes: 4,
		Ciphertext: make([]byte, 32), KeyID: "k1", RecognitionStatus: "disabled"}
	tests := []struct {
		name   string
		insert func() error
	}{
		{"latitude above 90", func() error {
			b := gpsBatch(3)
			b[1].Latitude = 90.0001
			_, err := st.InsertGPS(ctx, b)
			return err
		}},
		{"longitude below -180", func() error {
			b := gpsBatch(1)
			b[0].Longitude = -180.5
			_, err := st.InsertGPS(ctx, b)
			return err
		}},
		{"NaN latitude", func() error {
			b := gpsBatch(1)
			b[0].Latitude = math.NaN()
			_, err := st.InsertGPS(ctx, b)
			return err
		}},
		{"infinite gyroscope axis", func() error {
			_, err := st.InsertGyroscope(ctx, []models.Gyroscope{{Meta: meta(0), X: math.Inf(1)}})
			return err
		}},
		{"device id too long", func() error {
			b := gpsBatch(1)
			b[0].DeviceID = string(make([]byte, 65))
			_, err := st.InsertGPS(ctx, b)
			return err
		}},
		{"unknown recognition status", func() error {
			p := good
			p.MessageID, p.RecognitionStatus = uuid.New(), "maybe"
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
		{"zero size", func() error {
			p := good
			p.MessageID, p.SizeBytes, p.Ciphertext = uuid.New(), 0, make([]byte, 28)
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
		{"ciphertext length does not match the size", func() error {
			p := good
			p.MessageID, p.Ciphertext = uuid.New(), make([]byte, 31)
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
		{"matched without a face id", func() error {
			p := good
			p.MessageID, p.RecognitionStatus, p.Recognized, p.Similarity = uuid.New(), "matched", true, &sim
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
		{"recognized but no_face", func() error {
			p := good
			p.MessageID, p.RecognitionStatus, p.Recognized = uuid.New(), "no_face", true
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
		{"other content type", func() error {
			p := good
			p.MessageID, p.ContentType = uuid.New(), "image/gif"
			_, _, err := st.InsertPhoto(ctx, p)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.insert(); !ierr.Is(err, ierr.Invalid) {
				t.Fatalf("err = %v, want an Invalid error", err)
			}
		})
	}
	if n := count(t, st, `SELECT (SELECT count(*) FROM gps) + (SELECT count(*) FROM gyroscope) + (SELECT count(*) FROM photo) + (SELECT count(*) FROM audit_log)`); n != 0 {
		t.Fatalf("%d rows written by refused inserts", n)
	}
}

func TestInsertPhoto(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	sim := 97.25
	p := storage.Photo{Meta: meta(0), ContentType: models.ContentTypePNG, SizeBytes: 10,
		Ciphertext: make([]byte, 38), KeyID: "k2", RecognitionStatus: "matched", Recognized: true,
		FaceID: "face-1", Similarity: &sim}
	for i, want := range []bool{true, false} {
		_, inserted, err := st.InsertPhoto(ctx, p)
		if err != nil || inserted != want {
			t.Fatalf("insert %d: inserted=%v err=%v, want %v", i+1, inserted, err, want)
		}
	}
	stored, err := st.Stored(ctx, models.TypePhoto, p.MessageID)
	if err != nil || !stored {
		t.Fatalf("Stored = %v, %v", stored, err)
	}
	got, err := st.GetPhoto(ctx, p.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if got.FaceID != "face-1" || *got.Similarity != sim || !got.Recognized || got.KeyID != "k2" ||
		got.SizeBytes != 10 || got.ContentType != models.ContentTypePNG || !got.RecordedAt.Equal(p.RecordedAt) || got.ID == 0 {
		t.Fatalf("GetPhoto = %+v", got)
	}
	var actor, resourceID string
	var details map[string]any
	if err := st.Pool().QueryRow(ctx, `SELECT actor, resource_id, details FROM audit_log WHERE action = 'photo.stored' AND message_id = $1`,
		p.MessageID).Scan(&actor, &resourceID, &details); err != nil {
		t.Fatal(err)
	}
	if actor != "fleet-app" || resourceID != fmt.Sprint(got.ID) || details["recognition_status"] != "matched" ||
		details["face_id"] != "face-1" || details["encryption_key_id"] != "k2" || details["device_id"] != p.DeviceID {
		t.Fatalf("audit row: %q %q %v", actor, resourceID, details)
	}
	if _, err := st.GetPhoto(ctx, uuid.New()); !ierr.Is(err, ierr.NotFound) {
		t.Fatalf("GetPhoto of an unknown message: %v", err)
	}
	if stored, err := st.Stored(ctx, models.TypePhoto, uuid.New()); err != nil || stored {
		t.Fatalf("Stored of an unknown message = %v, %v", stored, err)
	}
	if n := orphans(t, st); n != 0 {
		t.Fatalf("%d orphans", n)
	}
}

func TestAuditEntryIsWrittenOnce(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	e := storage.AuditEntry{Actor: "fleet-app", Action: storage.ActionDeadLettered, Resource: "gps",
		MessageID: uuid.New(), Details: map[string]any{"reason": "invalid"}}
	for range 2 {
		if err := st.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	unknown := storage.AuditEntry{Actor: "worker", Action: storage.ActionDeadLettered, Resource: "gps"}
	for range 2 {
		if err := st.Audit(ctx, unknown); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE message_id = $1`, e.MessageID); n != 1 {
		t.Fatalf("rows for one message = %d, want 1", n)
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE message_id IS NULL AND resource_id IS NULL AND details = '{}'`); n != 2 {
		t.Fatalf("rows without a message id = %d, want 2", n)
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("nothing listening is Unavailable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		_, err = storage.Open(ctx, "postgres://postgres@"+addr+"/x?connect_timeout=2")
		if !ierr.Is(err, ierr.Unavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad DSN is Misconfigured", func(t *testing.T) {
		if _, err := storage.Open(ctx, "postgres://a:b@host:notaport/db"); !ierr.Is(err, ierr.Misconfigured) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing database is Misconfigured", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		_, err = storage.Open(ctx, fmt.Sprintf("postgres://%s@%s:%d/no_such_db_%d", cfg.User, cfg.Host, cfg.Port, time.Now().UnixNano()))
		if !ierr.Is(err, ierr.Misconfigured) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing schema is Misconfigured", func(t *testing.T) {
		st, err := storage.Open(ctx, testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.InsertGPS(ctx, gpsBatch(1)); !ierr.Is(err, ierr.Misconfigured) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a held lock is Unavailable", func(t *testing.T) {
		_, dsn := newStore(t)
		st, err := storage.Open(ctx, withParam(dsn, "lock_timeout", "200"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		tx, err := st.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `LOCK TABLE gps IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		if _, err := st.InsertGPS(ctx, gpsBatch(1)); !ierr.Is(err, ierr.Unavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func withParam(dsn, key, value string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " " + key + "=" + value
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// BenchmarkGPSBatchInsert compares one batch statement for 500 fixes with
// 500 single-row transactions, in the same run, and reports the speed-up.
func BenchmarkGPSBatchInsert(b *testing.B) {
	st, _ := newStore(b)
	ctx := context.Background()
	const n = 500
	var batchTime, singleTime time.Duration
	for b.Loop() {
		batch := gpsBatch(n)
		start := time.Now()
		if _, err := st.InsertGPS(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batchTime += time.Since(start)

		batch = gpsBatch(n)
		start = time.Now()
		for i := range batch {
			if _, err := st.InsertGPS(ctx, batch[i:i+1]); err != nil {
				b.Fatal(err)
			}
		}
		singleTime += time.Since(start)
	}
	rows := float64(b.N * n)
	b.ReportMetric(float64(batchTime.Nanoseconds())/rows, "batch-ns/row")
	b.ReportMetric(float64(singleTime.Nanoseconds())/rows, "single-ns/row")
	b.ReportMetric(float64(singleTime)/float64(batchTime), "speedup-x")
}
