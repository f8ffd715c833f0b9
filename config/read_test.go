package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	keyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	keyB = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=" // 32 bytes
)

func TestLoadAPIReadDefaults(t *testing.T) {
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": "phone:" + goodSecret + ":ingest"}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Read
	if r.DatabaseURL != "" || len(r.CORSAllowedOrigins) != 0 || len(r.EncryptionKeys) != 0 {
		t.Errorf("the read API is on without being configured: %+v", r)
	}
	if r.StatementTimeout != DefaultReadStatementTimeout || r.PoolMaxConns != DefaultReadPoolMaxConns {
		t.Errorf("pool settings = %s %d", r.StatementTimeout, r.PoolMaxConns)
	}
}

func TestLoadAPIReadValues(t *testing.T) {
	c, err := LoadAPI(envMap(map[string]string{
		"API_KEYS":               "phone:" + goodSecret + ":ingest,ui:" + goodSecret + "x:read",
		"DATABASE_URL":           "postgres://reader:pw@db:5432/telemetry?sslmode=disable",
		"READ_STATEMENT_TIMEOUT": "750ms",
		"READ_POOL_MAX_CONNS":    "3",
		"CORS_ALLOWED_ORIGINS":   "https://App.Example.com, http://localhost:3000,https://x.example:443,https://app.example.com",
		"ENCRYPTION_KEYS":        "k2:" + keyB + ",k1:" + keyA,
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Read
	if r.StatementTimeout != 750*time.Millisecond || r.PoolMaxConns != 3 {
		t.Errorf("pool settings = %s %d", r.StatementTimeout, r.PoolMaxConns)
	}
	// Lower case and without the default port, as browsers send Origin;
	// duplicates once.
	want := []string{"https://app.example.com", "http://localhost:3000", "https://x.example"}
	if !reflect.DeepEqual(r.CORSAllowedOrigins, want) {
		t.Errorf("origins = %q, want %q", r.CORSAllowedOrigins, want)
	}
	if len(r.EncryptionKeys) != 2 || r.EncryptionKeys[0].ID() != "k2" || r.EncryptionKeys[1].ID() != "k1" {
		t.Errorf("keys = %v", r.EncryptionKeys)
	}
	if got := r.PoolDSN(); got != "postgres://reader:pw@db:5432/telemetry?sslmode=disable&pool_max_conns=3" {
		t.Errorf("PoolDSN = %q", got)
	}
	c, err = LoadAPI(envMap(map[string]string{
		"API_KEYS":             "phone:" + goodSecret + ":ingest",
		"ENCRYPTION_KEY":       keyA,
		"CORS_ALLOWED_ORIGINS": "*",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Read.EncryptionKeys) != 1 || c.Read.EncryptionKeys[0].ID() != "default" || !reflect.DeepEqual(c.Read.CORSAllowedOrigins, []string{"*"}) {
		t.Errorf("read = %+v", c.Read)
	}
}

func TestReadPoolDSN(t *testing.T) {
	for _, tt := range []struct{ dsn, want string }{
		{"", ""},
		{"postgres://h/db", "postgres://h/db?pool_max_conns=8"},
		{"postgresql://h/db?sslmode=require", "postgresql://h/db?sslmode=require&pool_max_conns=8"},
		{"host=h dbname=db", "host=h dbname=db pool_max_conns=8"},
		{"postgres://h/db?pool_max_conns=2", "postgres://h/db?pool_max_conns=2"}, // the DSN wins
	} {
		if got := (Read{DatabaseURL: tt.dsn, PoolMaxConns: 8}).PoolDSN(); got != tt.want {
			t.Errorf("PoolDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestLoadAPIReadErrorsNameTheVariable(t *testing.T) {
	base := "phone:" + goodSecret + ":ingest"
	for _, tt := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bad dsn", map[string]string{"DATABASE_URL": "postgres://user:hunter2@host:notaport/db"},
			[]string{"DATABASE_URL: is not a valid PostgreSQL URL"}},
		{"timeout", map[string]string{"READ_STATEMENT_TIMEOUT": "1ms"}, []string{"READ_STATEMENT_TIMEOUT:"}},
		{"timeout text", map[string]string{"READ_STATEMENT_TIMEOUT": "soon"}, []string{"READ_STATEMENT_TIMEOUT:"}},
		{"pool", map[string]string{"READ_POOL_MAX_CONNS": "0"}, []string{"READ_POOL_MAX_CONNS:"}},
		{"pool huge", map[string]string{"READ_POOL_MAX_CONNS": "100000"}, []string{"READ_POOL_MAX_CONNS:"}},
		{"origin with path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com/"},
			[]string{"CORS_ALLOWED_ORIGINS: entry 1: an origin has no path"}},
		{"origin scheme", map[string]string{"CORS_ALLOWED_ORIGINS": "https://ok.example,ftp://files.example"},
			[]string{"CORS_ALLOWED_ORIGINS: entry 2: must be * or an origin"}},
		{"origin bare host", map[string]string{"CORS_ALLOWED_ORIGINS": "app.example.com"}, []string{"CORS_ALLOWED_ORIGINS: entry 1"}},
		{"origin credentials", map[string]string{"CORS_ALLOWED_ORIGINS": "https://u:p@app.example.com"}, []string{"CORS_ALLOWED_ORIGINS: entry 1"}},
		{"origin query", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com?x=1"}, []string{"CORS_ALLOWED_ORIGINS: entry 1"}},
		{"origin empty entry", map[string]string{"CORS_ALLOWED_ORIGINS": "https://a.example,,https://b.example"}, []string{"CORS_ALLOWED_ORIGINS: entry 2"}},
		{"origin port", map[string]string{"CORS_ALLOWED_ORIGINS": "http://localhost:0"}, []string{"CORS_ALLOWED_ORIGINS: entry 1: port"}},
		{"both key variables", map[string]string{"ENCRYPTION_KEYS": "k1:" + keyA, "ENCRYPTION_KEY": keyB},
			[]string{"ENCRYPTION_KEYS or ENCRYPTION_KEY, not both"}},
		{"short key", map[string]string{"ENCRYPTION_KEY": "c2hvcnQ="}, []string{"ENCRYPTION_KEY:"}},
		{"bad key list", map[string]string{"ENCRYPTION_KEYS": "k1"}, []string{"ENCRYPTION_KEYS: entry 1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"API_KEYS": base}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := LoadAPI(envMap(env))
			if err == nil {
				t.Fatal("LoadAPI accepted a wrong read configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{"hunter2", keyA, keyB} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks %q:\n%v", secret, err)
				}
			}
		})
	}
}

func TestAPIValidateChecksReadSettingsOnlyWithADatabase(t *testing.T) {
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": "phone:" + goodSecret + ":ingest"}))
	if err != nil {
		t.Fatal(err)
	}
	c.Read = Read{} // as a test builds it by hand: no database, no pool settings
	if err := c.Validate(); err != nil {
		t.Errorf("an ingest-only configuration without read settings: %v", err)
	}
	c.Read = Read{DatabaseURL: "postgres://h/db"}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "READ_STATEMENT_TIMEOUT") || !strings.Contains(err.Error(), "READ_POOL_MAX_CONNS") {
		t.Errorf("a database without pool settings: %v", err)
	}
	c.Read = Read{CORSAllowedOrigins: []string{"https://a.example/path"}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") {
		t.Errorf("a hand-built origin with a path: %v", err)
	}
}
