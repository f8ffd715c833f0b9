package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	apiRoleScript = "postgres-init/10-api-role.sh"
	initDirInside = "/docker-entrypoint-initdb.d"
	apiUser       = "challenge_api"
)

// TestComposeAPIReadsAsItsOwnUser: the API's DATABASE_URL names the
// challenge_api user created by the init script, never the owner the worker
// migrates as; the password it uses is the one the script sets; and the API
// gets the worker's photo keys (the image route decrypts).
func TestComposeAPIReadsAsItsOwnUser(t *testing.T) {
	svc := byContainer(t, loadCompose(t))
	dotenv := readDotenv(t, envExample)
	value := func(name, key string) string {
		t.Helper()
		raw, ok := svc[name].Environment[key]
		if !ok {
			t.Fatalf("%s: no %s", name, key)
		}
		v, err := interpolate(raw, dotenv)
		if err != nil {
			t.Fatalf("%s %s: %v", name, key, err)
		}
		return v
	}
	api, err := url.Parse(value("challenge_app_api", "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	worker, err := url.Parse(value("challenge_app_worker", "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	apiPassword, _ := api.User.Password()
	if api.User.Username() != apiUser || api.User.Username() == dotenv["POSTGRES_USER"] {
		t.Errorf("API database user %q, want %s (not the owner %q)", api.User.Username(), apiUser, dotenv["POSTGRES_USER"])
	}
	if worker.User.Username() != dotenv["POSTGRES_USER"] {
		t.Errorf("worker database user %q, want the owner %q", worker.User.Username(), dotenv["POSTGRES_USER"])
	}
	if api.Host != worker.Host || api.Path != worker.Path {
		t.Errorf("API database %s%s, worker's %s%s: want the same", api.Host, api.Path, worker.Host, worker.Path)
	}
	if got := value("challenge_db_postgres", "API_DB_PASSWORD"); got != apiPassword || got == "" {
		t.Errorf("postgres creates %s with password %q, the API connects with %q", apiUser, got, apiPassword)
	}
	for _, k := range []string{"ENCRYPTION_KEYS", "ENCRYPTION_KEY"} {
		if a, w := svc["challenge_app_api"].Environment[k], svc["challenge_app_worker"].Environment[k]; a != w {
			t.Errorf("%s: API %q, worker %q; want the same keys", k, a, w)
		}
	}
	pg := svc["challenge_db_postgres"]
	if !slices.ContainsFunc(pg.Volumes, func(v string) bool {
		return strings.HasPrefix(v, "./deploy/postgres-init:"+initDirInside)
	}) {
		t.Errorf("challenge_db_postgres does not mount ./deploy/postgres-init at %s: %v", initDirInside, pg.Volumes)
	}
	// The postgres image sources a script that is not executable: with a
	// `set -e` of its own it would then end the entrypoint's shell.
	fi, err := os.Stat(apiRoleScript)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable", apiRoleScript)
	}
}

// TestInitScriptGivesTheAPILeastPrivilege runs the init script as the
// postgres image would (twice: it must be idempotent), then the worker's
// migrations, and checks what challenge_api may do: read the readings and
// the device summary, write audit rows, and nothing else.
func TestInitScriptGivesTheAPILeastPrivilege(t *testing.T) {
	psql, err := localpg.FindTool("psql")
	if err != nil {
		if psql, err = exec.LookPath("psql"); err != nil {
			t.Fatalf("psql: %v", err)
		}
	}
	dsn := testenv.Postgres(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	password := make([]byte, 12)
	rand.Read(password)
	run := func() {
		t.Helper()
		cmd := exec.Command("bash", apiRoleScript)
		cmd.Env = append(os.Environ(),
			"PATH="+filepath.Dir(psql)+":"+os.Getenv("PATH"),
			"POSTGRES_USER="+cfg.User, "POSTGRES_DB="+cfg.Database,
			"PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGSSLMODE=disable",
			"API_DB_PASSWORD="+hex.EncodeToString(password))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", apiRoleScript, err, out)
		}
	}
	run()
	run()

	ctx := context.Background()
	owner, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := storage.Migrate(ctx, owner.Pool()); err != nil {
		t.Fatal(err)
	}

	apiCfg := cfg.Copy()
	apiCfg.User = apiUser
	conn, err := pgx.ConnectConfig(ctx, apiCfg)
	if err != nil {
		t.Fatalf("connect as %s: %v", apiUser, err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SELECT count(*) FROM gps`, `SELECT count(*) FROM gyroscope`, `SELECT count(*) FROM photo`,
		`SELECT count(*) FROM device`,
		`INSERT INTO audit_log (actor, action, resource) VALUES ('frontend', 'photo.viewed', 'photo')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Errorf("%s as %s: %v", q, apiUser, err)
		}
	}
	for _, q := range []string{
		`INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at) VALUES (gen_random_uuid(), 'd', 0, 0, now(), now())`,
		`UPDATE gps SET latitude = 0`,
		`DELETE FROM photo`,
		`UPDATE device SET gps_count = 0`,
		`SELECT count(*) FROM audit_log`,
		`UPDATE audit_log SET actor = 'someone else'`,
		`INSERT INTO audit_log (actor, action, resource, occurred_at) VALUES ('frontend', 'photo.viewed', 'photo', '2000-01-01')`,
		`DELETE FROM audit_log`,
		`SELECT count(*) FROM schema_migrations`,
		`CREATE TABLE api_owned (x int)`,
	} {
		_, err := conn.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("%s as %s: %v, want permission denied", q, apiUser, err)
		}
	}
}
