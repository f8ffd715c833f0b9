package backuptest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPostgresDumpRestoresIntoAFreshCluster runs docs/backup.md's
// PostgreSQL procedure: pg_dumpall --roles-only and pg_dump -Fc of a
// database the storage code wrote readings and a sealed photo to, then, on
// a cluster started empty, the roles, a new database and pg_restore
// --exit-on-error (one failed statement fails the test). The restored
// database has every row, the values, the audit trail, the migrations
// recorded (the worker's Migrate finds nothing to do) and a photo that
// opens with the key, and nothing else.
func TestPostgresDumpRestoresIntoAFreshCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgDump, pgDumpall, pgRestore, psql := tool(t, "pg_dump"), tool(t, "pg_dumpall"), tool(t, "pg_restore"), tool(t, "psql")

	// The source: a migrated database holding readings.
	srcDSN := testenv.Postgres(t)
	src := openStore(ctx, t, srcDSN)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var fixes []models.GPS
	for i := range 200 {
		fixes = append(fixes, models.GPS{
			Meta: models.Meta{
				MessageID: uuid.Must(uuid.NewV7()), Actor: "phone-fleet",
				DeviceID:   []string{"truck-1", "truck-2"}[i%2],
				RecordedAt: base.Add(time.Duration(i) * time.Second), ReceivedAt: base.Add(time.Duration(i)*time.Second + time.Millisecond),
			},
			Latitude: -23.5 + float64(i)/1000, Longitude: -46.6 - float64(i)/1000,
		})
	}
	if _, err := src.InsertGPS(ctx, fixes); err != nil {
		t.Fatal(err)
	}
	key, err := crypto.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := crypto.NewSealer([]crypto.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	image, err := os.ReadFile(photoFile)
	if err != nil {
		t.Fatal(err)
	}
	photoID := uuid.Must(uuid.NewV7())
	keyID, sealed, err := sealer.Seal(image, photoID[:])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.InsertPhoto(ctx, storage.Photo{
		Meta:        models.Meta{MessageID: photoID, Actor: "phone-fleet", DeviceID: "truck-1", RecordedAt: base, ReceivedAt: base},
		ContentType: "image/png", SizeBytes: len(image), Ciphertext: sealed, KeyID: keyID,
		RecognitionStatus: "disabled",
	}); err != nil {
		t.Fatal(err)
	}
	before := counts(ctx, t, src)

	// Back up: the cluster's roles (challenge_reader, the API's user), then
	// the database in the custom format.
	dir := t.TempDir()
	roles, dump := filepath.Join(dir, "roles.sql"), filepath.Join(dir, "telemetry.dump")
	run(ctx, t, pgDumpall, "--roles-only", "--no-role-passwords", "--dbname", srcDSN, "--file", roles)
	run(ctx, t, pgDump, "--format=custom", "--dbname", srcDSN, "--file", dump)

	// Restore into a cluster that never saw this data.
	fresh, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := fresh.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	// "role postgres already exists" is the one expected error: psql goes
	// on (no ON_ERROR_STOP), as an operator's restore would.
	run(ctx, t, psql, "--quiet", "--dbname", fresh.DSN("postgres"), "--file", roles)
	if err := fresh.CreateDatabase(ctx, "telemetry"); err != nil {
		t.Fatal(err)
	}
	restoredDSN := fresh.DSN("telemetry")
	run(ctx, t, pgRestore, "--exit-on-error", "--dbname", restoredDSN, dump)

	dst := openStore(ctx, t, restoredDSN)
	if after := counts(ctx, t, dst); after != before {
		t.Errorf("restored counts %+v, want %+v", after, before)
	}
	if before.GPS != 200 || before.Photo != 1 || before.Audit != 201 {
		t.Errorf("source counts %+v, want 200 gps, 1 photo, 201 audit rows", before)
	}
	for _, f := range []models.GPS{fixes[0], fixes[137], fixes[199]} {
		var dev string
		var lat, lon float64
		var at time.Time
		if err := dst.Pool().QueryRow(ctx, `SELECT device_id, latitude, longitude, recorded_at FROM gps WHERE message_id = $1`,
			f.MessageID).Scan(&dev, &lat, &lon, &at); err != nil {
			t.Fatalf("gps %s: %v", f.MessageID, err)
		}
		if dev != f.DeviceID || lat != f.Latitude || lon != f.Longitude || !at.Equal(f.RecordedAt) {
			t.Errorf("gps %s restored as (%s, %v, %v, %v), want (%s, %v, %v, %v)",
				f.MessageID, dev, lat, lon, at, f.DeviceID, f.Latitude, f.Longitude, f.RecordedAt)
		}
	}
	p, err := dst.GetPhoto(ctx, photoID)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := sealer.Open(p.KeyID, p.Ciphertext, photoID[:])
	if err != nil {
		t.Fatalf("restored photo does not open with key %s: %v", p.KeyID, err)
	}
	if !bytes.Equal(opened, image) {
		t.Error("restored photo opens to other bytes than were stored")
	}
	// The schema came back whole: Migrate has nothing to apply, and the
	// unique message_id that makes a redelivery harmless still holds.
	if err := storage.Migrate(ctx, dst.Pool()); err != nil {
		t.Errorf("Migrate on the restored database: %v", err)
	}
	if inserted, err := dst.InsertGPS(ctx, fixes[:1]); err != nil || len(inserted) != 0 {
		t.Errorf("a stored fix inserted again after the restore: %d rows, %v; want 0", len(inserted), err)
	}
	var readerGrants int
	if err := dst.Pool().QueryRow(ctx, `SELECT count(*) FROM information_schema.role_table_grants
		WHERE grantee = 'challenge_reader' AND privilege_type = 'SELECT'`).Scan(&readerGrants); err != nil || readerGrants != 4 {
		t.Errorf("challenge_reader holds SELECT on %d tables after the restore (%v), want 4", readerGrants, err)
	}
}

type rowCounts struct{ GPS, Gyroscope, Photo, Device, Audit int }

func counts(ctx context.Context, t *testing.T, s *storage.Store) rowCounts {
	t.Helper()
	var c rowCounts
	if err := s.Pool().QueryRow(ctx, `SELECT
		(SELECT count(*) FROM gps), (SELECT count(*) FROM gyroscope), (SELECT count(*) FROM photo),
		(SELECT count(*) FROM device), (SELECT count(*) FROM audit_log)`).
		Scan(&c.GPS, &c.Gyroscope, &c.Photo, &c.Device, &c.Audit); err != nil {
		t.Fatal(err)
	}
	return c
}

// openStore opens dsn with the storage code and migrates it (a no-op once
// migrated).
func openStore(ctx context.Context, t *testing.T, dsn string) *storage.Store {
	t.Helper()
	s, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := storage.Migrate(ctx, s.Pool()); err != nil {
		t.Fatal(err)
	}
	return s
}

// tool finds a PostgreSQL client program beside the server binaries the
// test clusters run, so its version matches theirs.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := localpg.FindTool(name)
	if err != nil {
		t.Fatalf("%v (it comes with the PostgreSQL server binaries)", err)
	}
	return p
}

func run(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}

// photoFile is a real image of the repository's test data.
const photoFile = "../../testdata/faces/astronaut.png"
