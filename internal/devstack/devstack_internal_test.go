package devstack

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadKeysGeneratesOnceAndKeeps(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadKeys(dir, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := crypto.ParseKeys(k1.encryptionKeys, "")
	if err != nil || len(ring) != 1 || ring[0].ID() != crypto.DefaultKeyID {
		t.Fatalf("ENCRYPTION_KEYS = one generated %q key? %v (err=%v)", crypto.DefaultKeyID, ring, err)
	}
	if want := DevKeyName + ":" + k1.devSecret + ":ingest+read"; k1.apiKeys != want || len(k1.devSecret) < 16 {
		t.Fatalf("API_KEYS = %q, want %q with a secret of >= 16 chars", k1.apiKeys, want)
	}
	for _, f := range []string{KeyFile, "dev-api-key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, fi.Mode().Perm())
		}
	}

	k2, err := loadKeys(dir, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if k2 != k1 {
		t.Fatalf("keys changed between runs: %+v then %+v", k1, k2)
	}
}

// TestLoadKeysKeepsPhotoKeysFromTheEnvironment: photo keys given to one
// `make run` in the environment are merged into .devstack's key file, the
// environment's active key first, so a later plain `make run` still opens
// (and seals with) them; the binaries' loaders get them all.
func TestLoadKeysKeepsPhotoKeysFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	first, err := loadKeys(dir, mapEnv(nil)) // a plain run: the generated "default" key
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := crypto.GenerateKey("k1")
	k2, _ := crypto.GenerateKey("k2")
	k3, _ := crypto.GenerateKey("k3")
	gen := first.encryptionKeys

	for _, step := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"keys given", map[string]string{"ENCRYPTION_KEYS": k2.Encode() + "," + k1.Encode()}, k2.Encode() + "," + k1.Encode() + "," + gen},
		{"plain run after", nil, k2.Encode() + "," + k1.Encode() + "," + gen},
		{"a kept key given again, another added", map[string]string{"ENCRYPTION_KEYS": k3.Encode() + "," + k1.Encode()}, k3.Encode() + "," + k1.Encode() + "," + k2.Encode() + "," + gen},
		{"plain run after rotation", nil, k3.Encode() + "," + k1.Encode() + "," + k2.Encode() + "," + gen},
		{"the shorthand of the kept key", map[string]string{"ENCRYPTION_KEY": strings.TrimPrefix(gen, crypto.DefaultKeyID+":")}, gen + "," + k3.Encode() + "," + k1.Encode() + "," + k2.Encode()},
	} {
		k, err := loadKeys(dir, mapEnv(step.env))
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if k.encryptionKeys != step.want {
			t.Fatalf("%s: ENCRYPTION_KEYS ids %s, want %s", step.name, ids(t, k.encryptionKeys), ids(t, step.want))
		}
		b, err := os.ReadFile(filepath.Join(dir, KeyFile))
		if err != nil || strings.TrimSpace(string(b)) != step.want {
			t.Fatalf("%s: %s holds ids %s (%v), want %s", step.name, KeyFile, ids(t, strings.TrimSpace(string(b))), err, ids(t, step.want))
		}
		// What the worker is configured with: every key, ENCRYPTION_KEY
		// from the environment hidden (the loader refuses both at once).
		base := mapEnv(mergeMaps(step.env, map[string]string{"DATABASE_URL": "postgres://u@h/d"}))
		w, err := config.LoadWorker(withPhotoKeys(base, k.encryptionKeys))
		if err != nil {
			t.Fatalf("%s: worker configuration: %v", step.name, err)
		}
		if got := keyIDs(w.EncryptionKeys); got != ids(t, step.want) {
			t.Fatalf("%s: worker keys %s, want %s", step.name, got, ids(t, step.want))
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", KeyFile, fi, err)
	}

	// Another key under a kept key's id would strand the photos sealed
	// under the kept one: refused, naming the id.
	other, _ := crypto.GenerateKey("k1")
	_, err = loadKeys(dir, mapEnv(map[string]string{"ENCRYPTION_KEYS": other.Encode()}))
	if err == nil || !strings.Contains(err.Error(), `photo key "k1"`) {
		t.Fatalf("a different key k1: err = %v, want it refused naming k1", err)
	}
	if strings.Contains(err.Error(), strings.TrimPrefix(other.Encode(), "k1:")) {
		t.Fatal("the error shows key material")
	}
}

// TestLoadKeysReadsTheSingleKeyFileOfEarlierRuns: a .devstack made before
// keys were merged holds one bare key; it is the "default" key, kept.
func TestLoadKeysReadsTheSingleKeyFileOfEarlierRuns(t *testing.T) {
	dir := t.TempDir()
	raw := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte(raw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := loadKeys(dir, mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := crypto.DefaultKeyID + ":" + raw; k.encryptionKeys != want {
		t.Fatalf("ENCRYPTION_KEYS = %s, want the kept key as %s", ids(t, k.encryptionKeys), crypto.DefaultKeyID)
	}
}

func TestLoadKeysLeavesEnvironmentAPIKeysAlone(t *testing.T) {
	dir := t.TempDir()
	k, err := loadKeys(dir, mapEnv(map[string]string{"API_KEYS": "me:0123456789abcdef0123:ingest"}))
	if err != nil {
		t.Fatal(err)
	}
	if k.apiKeys != "" || k.devSecret != "" {
		t.Fatalf("keys = %+v, want no API key generated", k)
	}
	if _, err := os.Stat(filepath.Join(dir, "dev-api-key")); !os.IsNotExist(err) {
		t.Fatalf("dev-api-key written although the environment had API_KEYS (err=%v)", err)
	}
}

// ids lists the key ids of an ENCRYPTION_KEYS value, for messages that must
// not show key material.
func ids(t *testing.T, encryptionKeys string) string {
	t.Helper()
	ks, err := crypto.ParseKeys(encryptionKeys, "")
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return keyIDs(ks)
}

func keyIDs(ks []crypto.Key) string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ID()
	}
	return strings.Join(out, ",")
}

func TestOverlay(t *testing.T) {
	base := mapEnv(map[string]string{"A": "base", "B": "base", "C": "base"})
	get := overlay(base, map[string]string{"A": "dev", "B": ""})
	for name, want := range map[string]string{"A": "dev", "B": "base", "C": "base", "D": ""} {
		if got := get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestAWSConfigured(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.aws here
	if awsConfigured(mapEnv(nil)) {
		t.Fatal("configured with an empty environment and no ~/.aws")
	}
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL_REKOGNITION"} {
		if !awsConfigured(mapEnv(map[string]string{v: "x"})) {
			t.Errorf("%s set: not seen as configured", v)
		}
	}
	creds := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(creds, []byte("[default]\n"), 0o600)
	if !awsConfigured(mapEnv(map[string]string{"AWS_SHARED_CREDENTIALS_FILE": creds})) {
		t.Error("shared credentials file: not seen as configured")
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".aws"), 0o755)
	os.WriteFile(filepath.Join(home, ".aws", "config"), []byte("[default]\nregion = eu-west-1\n"), 0o600)
	if !awsConfigured(mapEnv(map[string]string{"HOME": home})) {
		t.Error("~/.aws/config in the HOME the environment gives: not seen as configured")
	}
}

// TestStartRekognitionWithoutAWS: no AWS configuration starts the local
// face recognition service, which the worker's configuration points at and
// which stops with close; AWS configured starts nothing.
func TestStartRekognitionWithoutAWS(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.aws here
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	rs, err := startRekognition(mapEnv(nil), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			rs.close()
		}
	})
	if !strings.Contains(rs.describe, "local face recognition") {
		t.Errorf("banner line %q does not say it is local face recognition", rs.describe)
	}
	cfg, err := config.LoadWorker(overlay(mapEnv(map[string]string{
		"NATS_URL": "nats://127.0.0.1:4222", "DATABASE_URL": "postgres://x@127.0.0.1/x",
		"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}), rs.env))
	if err != nil {
		t.Fatalf("the worker's configuration with the overlay: %v", err)
	}
	if cfg.RekognitionEndpoint != rs.env["AWS_ENDPOINT_URL_REKOGNITION"] || cfg.RekognitionCollectionID != localCollection {
		t.Errorf("worker configured with endpoint %q, collection %q; want %q, %q",
			cfg.RekognitionEndpoint, cfg.RekognitionCollectionID, rs.env["AWS_ENDPOINT_URL_REKOGNITION"], localCollection)
	}

	// It answers Rekognition's protocol.
	req, _ := http.NewRequest(http.MethodPost, cfg.RekognitionEndpoint+"/", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "RekognitionService.ListCollections")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=devstack/20260101/us-east-1/rekognition/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ListCollections = %d, want 200", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, RekognitionDir, "collections.json")); err != nil {
		t.Errorf("collections not kept under the state folder: %v", err)
	}

	closed = true
	if err := rs.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(cfg.RekognitionEndpoint, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("still listening after close")
	}

	aws, err := startRekognition(mapEnv(map[string]string{"AWS_PROFILE": "fleet", "REKOGNITION_COLLECTION_ID": "drivers"}), dir, log)
	if err != nil || aws.env != nil || !strings.Contains(aws.describe, "AWS Rekognition, collection drivers") || aws.close() != nil {
		t.Errorf("AWS configured: %+v, %v; want no overlay and the AWS line", aws, err)
	}
}

func TestFreeAddrReplacesBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	got, err := freeAddr(busy)
	if err != nil {
		t.Fatal(err)
	}
	if got == busy || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("freeAddr(%s) = %s, want another port on 127.0.0.1", busy, got)
	}
	if err := checkListenAddr(got); err != nil {
		t.Fatalf("returned address is not free: %v", err)
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		":8080":          "127.0.0.1:8080",
		"0.0.0.0:8080":   "127.0.0.1:8080",
		"[::]:8080":      "127.0.0.1:8080",
		"127.0.0.1:9000": "127.0.0.1:9000",
		"localhost:1":    "localhost:1",
	} {
		if got := dialAddr(in); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBannerHasAReadyCurlLine(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	printBanner(&buf, banner{
		apiURL: "http://127.0.0.1:8080", apiAdmin: "http://127.0.0.1:8081", workerAdmin: "http://127.0.0.1:8082",
		natsURL: "nats://127.0.0.1:4222", natsStore: ".devstack/nats",
		dsn:    "postgres://postgres:pw@127.0.0.1:5433/telemetry?sslmode=disable",
		devKey: "s3cr3t-dev-key-0123", rekognition: "disabled", now: now,
		rateLimit: rateLimitLine(config.API{RateLimitRPS: 10, RateLimitBurst: 20}),
	})
	out := buf.String()
	for _, want := range []string{
		"curl -i -X POST http://127.0.0.1:8080/telemetry/gps",
		"-H 'X-API-Key: s3cr3t-dev-key-0123'",
		`"timestamp":"2026-11-28T10:00:00Z"`,
		"postgres://postgres:***@127.0.0.1:5433/telemetry", // status line hides the password
		"FROM gps",
		"curl -i http://127.0.0.1:8080/telemetry/photo -H 'X-API-Key: s3cr3t-dev-key-0123'",
		"-F photo=@testdata/faces/grace_hopper.jpg",
		"SELECT device_id, recognition_status, face_id, similarity FROM photo",
		"rate limit     10 req/s per client IP, bursts of 20", // a load test must know it is limited
		"RATE_LIMIT_RPS=0 make run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
}

func TestAPIDSNKeepsTheServerAndReplacesTheUser(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://postgres@127.0.0.1:5433/telemetry?sslmode=disable":     "postgres://challenge_api:pw@127.0.0.1:5433/telemetry?sslmode=disable",
		"postgresql://owner:secret@db.example:5432/t?application_name=x":   "postgresql://challenge_api:pw@db.example:5432/t?application_name=x",
		"host=/run/postgresql dbname=telemetry user=owner password=secret": "host=/run/postgresql dbname=telemetry user=owner password=secret user=challenge_api password='pw'",
	} {
		got, err := apiDSN(in, "pw")
		if err != nil || got != want {
			t.Errorf("apiDSN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestEnsureAPIRole: the role is created, then found and updated on the
// next run; the API's DSN then reads and cannot write. An owner that may
// not manage roles gets an error (the dev stack then falls back).
func TestEnsureAPIRole(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	st, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := storage.Migrate(ctx, st.Pool()); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"first", "second"} {
		if err := ensureAPIRole(ctx, dsn, pw); err != nil {
			t.Fatalf("ensureAPIRole: %v", err)
		}
	}
	read, err := apiDSN(dsn, "second")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, read)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var user string
	if err := conn.QueryRow(ctx, `SELECT current_user FROM device LIMIT 1`).Scan(&user); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read the device table as %s: %v", APIRole, err)
	}
	_, err = conn.Exec(ctx, `DELETE FROM gps`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("DELETE FROM gps as %s: %v, want permission denied", APIRole, err)
	}

	if _, err := st.Pool().Exec(ctx, `DROP ROLE IF EXISTS devstack_no_createrole; CREATE ROLE devstack_no_createrole LOGIN NOCREATEROLE`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Pool().Exec(context.Background(), `DROP ROLE IF EXISTS devstack_no_createrole`) })
	limited, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	limited.User = url.User("devstack_no_createrole")
	if err := ensureAPIRole(ctx, limited.String(), "third"); err == nil {
		t.Fatal("ensureAPIRole as a user without CREATEROLE succeeded")
	}
}

// TestEmbeddedNATSSyncsEveryWrite: the dev stack's NATS runs as
// deploy/nats.conf does, syncing each JetStream write before it
// acknowledges it, so a 202 survives a crash of the host (SPEC §3).
func TestEmbeddedNATSSyncsEveryWrite(t *testing.T) {
	ns, err := startNATSServer(t.TempDir(), 0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	js := ns.JetStreamConfig()
	if js == nil {
		t.Fatal("JetStream is not enabled")
	}
	if !js.SyncAlways {
		t.Errorf("JetStream sync: every %v, want always (a host crash would lose readings answered 202)", js.SyncInterval)
	}
}

// TestClusterStartsFromADirectoryOthersCannotEnter is `make run` as root
// from a checkout in /root: the dev stack's PostgreSQL starts, its state is
// reachable through .devstack/pg, and it is kept across runs.
func TestClusterStartsFromADirectoryOthersCannotEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands PostgreSQL to the postgres OS user; as any other user the checkout is the caller's own")
	}
	state := filepath.Join(t.TempDir(), ".devstack") // under a 0700 directory, as in /root
	log := slog.New(slog.DiscardHandler)
	var cluster string
	t.Cleanup(func() {
		if cluster != "" {
			os.RemoveAll(cluster)
			os.Remove(filepath.Dir(cluster)) // the shared directory, once empty
		}
	})
	for run := range 2 {
		pg, err := startCluster(t.Context(), state, 0, log)
		if err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		cluster = filepath.Dir(pg.DataDir())
		conn, err := pgx.Connect(t.Context(), pg.DSN(DatabaseName))
		if err == nil {
			_, err = conn.Exec(t.Context(), "CREATE TABLE IF NOT EXISTS runs (n int); INSERT INTO runs VALUES (1)")
		}
		var n int
		if err == nil {
			err = conn.QueryRow(t.Context(), "SELECT count(*) FROM runs").Scan(&n)
			conn.Close(context.Background())
		}
		if stopErr := pg.Stop(context.Background()); stopErr != nil {
			t.Fatal(stopErr)
		}
		if err != nil || n != run+1 {
			t.Fatalf("run %d: %d rows (%v), want %d: the database is kept across runs", run+1, n, err, run+1)
		}
	}
	if !strings.HasPrefix(cluster, localpg.DefaultSharedDir+"/") {
		t.Errorf("cluster in %s, want it under %s", cluster, localpg.DefaultSharedDir)
	}
	if _, err := os.Stat(filepath.Join(state, "pg", "data", "PG_VERSION")); err != nil {
		t.Errorf(".devstack/pg does not lead to the cluster: %v", err)
	}
}
