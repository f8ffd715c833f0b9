package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// readerRole creates a login role that is a member of challenge_reader (the
// role migration 0002 grants) and returns a DSN of dsn's database as it.
// Roles belong to the cluster, so the name is unique per test; the role is
// dropped when the test ends.
func readerRole(t *testing.T, st *storage.Store, dsn string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name, password := "reader_"+hex.EncodeToString(b), hex.EncodeToString(b)+"-pw"
	exec(t, st, `CREATE ROLE `+name+` LOGIN PASSWORD '`+password+`' IN ROLE challenge_reader`)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := st.Pool().Exec(ctx, `DROP ROLE `+name); err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " user=" + name + " password=" + password
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

// TestReaderNeedsOnlyChallengeReader: every Reader method works for a role
// that has only challenge_reader's grants, and that role can change neither
// a reading nor the audit trail.
func TestReaderNeedsOnlyChallengeReader(t *testing.T) {
	t.Parallel()
	st, dsn := newStore(t)
	ctx := context.Background()
	g := readFix("dev-a", 1, 10)
	gy := models.Gyroscope{Meta: readFix("dev-a", 2, 0).Meta, X: 1}
	p := readPhoto("dev-a", 3, "matched", "face-1")
	if _, err := st.InsertGPS(ctx, []models.GPS{g, readFix("dev-b", 4, 11)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{gy}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.InsertPhoto(ctx, p); err != nil {
		t.Fatal(err)
	}

	// Opened after readerRole, so closed before its role is dropped.
	r, err := storage.OpenReader(ctx, readerRole(t, st, dsn), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	var user string
	if err := storage.ReaderPool(r).QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil || user == "postgres" {
		t.Fatalf("connected as %q (%v), want the reader role", user, err)
	}

	var img storage.SealedImage
	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return r.Ping(ctx) }},
		{"ListGyroscope", func() error {
			pg, err := r.ListGyroscope(ctx, storage.ListQuery{Limit: 10, DeviceID: "dev-a"})
			return want(err, len(pg.Items) == 1)
		}},
		{"ListGPS", func() error {
			pg, err := r.ListGPS(ctx, storage.ListQuery{Limit: 1, After: &storage.Position{At: t0.Add(time.Hour), ID: 1}})
			return want(err, len(pg.Items) == 1 && pg.Next != nil)
		}},
		{"ListPhotos", func() error {
			pg, err := r.ListPhotos(ctx, storage.ListQuery{Limit: 10, FaceID: "face-1", RecognitionStatus: "matched"})
			return want(err, len(pg.Items) == 1)
		}},
		{"Gyroscope", func() error { _, err := r.Gyroscope(ctx, gy.MessageID); return err }},
		{"GPS", func() error { _, err := r.GPS(ctx, g.MessageID); return err }},
		{"Photo", func() error { _, err := r.Photo(ctx, p.MessageID); return err }},
		{"PhotoImage", func() (err error) { img, err = r.PhotoImage(ctx, p.MessageID); return err }},
		{"AuditPhotoViewed", func() error {
			return r.AuditPhotoViewed(ctx, "front-end", img, map[string]any{"request_id": "r1"})
		}},
		{"AuditPhotoViewed again", func() error { return r.AuditPhotoViewed(ctx, "front-end", img, nil) }},
		{"ListDevices", func() error {
			devs, _, err := r.ListDevices(ctx, "", 10)
			return want(err, len(devs) == 2)
		}},
		{"Device", func() error {
			d, err := r.Device(ctx, "dev-a")
			return want(err, d.LastPhoto != nil && d.LastPosition != nil)
		}},
		{"Track", func() error {
			pts, _, err := r.Track(ctx, "dev-a", t0, time.Time{}, 10)
			return want(err, len(pts) == 1)
		}},
		{"StoredAfter", func() error {
			evs, found, err := r.StoredAfter(ctx, g.MessageID, nil, "", 10)
			return want(err, found && len(evs) == 3)
		}},
	}
	for _, c := range calls {
		if err := c.call(); err != nil {
			t.Errorf("%s as challenge_reader: %v", c.name, err)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE action = 'photo.viewed'`); n != 2 {
		t.Errorf("photo.viewed rows = %d, want 2", n)
	}

	refused := []string{
		`INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at) VALUES (gen_random_uuid(), 'x', 0, 0, now(), now())`,
		`UPDATE gps SET latitude = 0`,
		`DELETE FROM gps`,
		`UPDATE gyroscope SET x = 0`,
		`DELETE FROM gyroscope`,
		`UPDATE photo SET recognition_status = 'disabled'`,
		`DELETE FROM photo`,
		`UPDATE device SET gps_count = 0`,
		`DELETE FROM device`,
		`TRUNCATE gps`,
		`UPDATE audit_log SET actor = 'someone else'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
		`SELECT count(*) FROM audit_log`,
		// The API's audit rows take their id and time from the database.
		`INSERT INTO audit_log (actor, action, resource, id) OVERRIDING SYSTEM VALUE VALUES ('a', 'photo.viewed', 'photo', 1000)`,
		`INSERT INTO audit_log (actor, action, resource, occurred_at) VALUES ('a', 'photo.viewed', 'photo', '2001-01-01')`,
	}
	for _, sql := range refused {
		_, err := storage.ReaderPool(r).Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("%s as challenge_reader: %v, want insufficient_privilege", sql, err)
		}
	}
	if n := count(t, st, `SELECT count(*) FROM gps`); n != 2 {
		t.Errorf("gps rows = %d after the refused statements", n)
	}
}

// want turns a call's error and a check of its answer into one error.
func want(err error, ok bool) error {
	if err == nil && !ok {
		return errors.New("unexpected answer")
	}
	return err
}
