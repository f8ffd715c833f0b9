package testenv_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestNATSCarriesLargeJetStreamMessages(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got < 8<<20 {
		t.Fatalf("MaxPayload = %d, want >= 8 MiB", got)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.*"}})
	if err != nil {
		t.Fatal(err)
	}
	// A 5 MiB photo grows by a third in base64, inside JSON.
	big := bytes.Repeat([]byte("A"), 5<<20*4/3+1024)
	if _, err := js.Publish(ctx, "t.photo", big); err != nil {
		t.Fatalf("publish %d bytes: %v", len(big), err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "t.photo")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg.Data, big) {
		t.Fatal("stored message differs from the published one")
	}
}

func TestNATSWithOptions(t *testing.T) {
	t.Parallel()
	ns := testenv.NATSWith(t, func(o *server.Options) { o.MaxPayload = 1 << 20 })
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 1<<20 {
		t.Fatalf("MaxPayload = %d, want 1 MiB", got)
	}
}

func TestNATSStopAndRestartKeepsStreamAndURL(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	url := ns.URL
	// No reconnect buffer: a publish during the outage must fail, not be
	// queued and sent after the restart.
	nc, err := nats.Connect(ns.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.gps", []byte("before")); err != nil {
		t.Fatal(err)
	}

	ns.Stop()
	if ns.Server() != nil {
		t.Fatal("Server() != nil after Stop")
	}
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = js.Publish(pctx, "t.gps", []byte("during"))
	cancel()
	if err == nil {
		t.Fatal("publish succeeded while the server was stopped")
	}
	ns.Stop() // stopping twice is harmless

	ns.Restart(t)
	if ns.URL != url {
		t.Fatalf("URL changed across restart: %q then %q", url, ns.URL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("client did not reconnect after Restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stream, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "t.gps")
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "before" {
		t.Fatalf("last message = %q, want %q", msg.Data, "before")
	}
}

func TestPostgresGivesFreshDatabases(t *testing.T) {
	t.Parallel()
	a, b := testenv.Postgres(t), testenv.Postgres(t)
	if a == b {
		t.Fatalf("two calls returned the same DSN %q", a)
	}
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		var tables int
		err = conn.QueryRow(t.Context(),
			"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables)
		if err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("fresh database has %d tables", tables)
		}
		if _, err := conn.Exec(t.Context(), "CREATE TABLE mine (id int)"); err != nil {
			t.Fatal(err)
		}
		conn.Close(t.Context())
	}
}

func TestPostgresDropsDatabaseAfterTest(t *testing.T) {
	t.Parallel()
	var dsn string
	t.Run("user", func(t *testing.T) {
		dsn = testenv.Postgres(t)
		// A connection the test forgot to close must not block the drop.
		if _, err := pgx.Connect(t.Context(), dsn); err != nil {
			t.Fatal(err)
		}
	})
	_, err := pgx.Connect(t.Context(), dsn)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("connect after the test ended: err = %v, want 'does not exist'", err)
	}
}

// TestPostgresUsesTestDatabaseURL points TEST_DATABASE_URL at a server of
// its own and checks that the database is created there.
func TestPostgresUsesTestDatabaseURL(t *testing.T) {
	dir, err := os.MkdirTemp("", "testenv-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	defer os.RemoveAll(dir)
	c, err := localpg.Start(t.Context(), localpg.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(context.Background())

	for _, admin := range []string{
		c.DSN("postgres"),
		"host=127.0.0.1 port=" + strconv.Itoa(c.Port()) + " user=postgres dbname=postgres sslmode=disable",
	} {
		t.Run("", func(t *testing.T) {
			t.Setenv(testenv.EnvDatabaseURL, admin)
			dsn := testenv.Postgres(t)
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Port != uint16(c.Port()) || !strings.HasPrefix(cfg.Database, "test_") {
				t.Fatalf("DSN %q: port %d database %q, want port %d and a test_ database",
					dsn, cfg.Port, cfg.Database, c.Port())
			}
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close(t.Context())
		})
	}
}
