package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func runWorkerCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// hasRow reports whether the help text has a variable row name, def.
func hasRow(help, name, def string) bool {
	for _, line := range strings.Split(help, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == name && f[1] == def {
			return true
		}
	}
	return false
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args    []string
		prefix  string
		command string // whose variables are listed
	}{
		{[]string{"-h"}, "worker: the challenge-v3 worker.", config.CommandWorker},
		{[]string{"--help"}, "worker: the challenge-v3 worker.", config.CommandWorker},
		{[]string{"-help"}, "worker: the challenge-v3 worker.", config.CommandWorker},
		{[]string{"help"}, "worker: the challenge-v3 worker.", config.CommandWorker},
		{[]string{"worker", "-h"}, "worker: the challenge-v3 worker.", config.CommandWorker},
		{[]string{"help", "migrate"}, "worker migrate: apply the database migrations", config.CommandMigrate},
		{[]string{"migrate", "-h"}, "worker migrate: apply the database migrations", config.CommandMigrate},
		{[]string{"migrate", "--help"}, "worker migrate: apply the database migrations", config.CommandMigrate},
		{[]string{"help", "dlq"}, "worker dlq: inspect and replay", config.CommandDLQ},
		{[]string{"dlq", "-h"}, "worker dlq: inspect and replay", config.CommandDLQ},
		{[]string{"dlq", "replay", "-h"}, "worker dlq: inspect and replay", config.CommandDLQ},
	}
	for _, tt := range tests {
		code, out, errOut := runWorkerCmd(t, nil, tt.args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, tt.prefix) {
			t.Errorf("worker %q: exit %d, stderr %q, stdout:\n%s", tt.args, code, errOut, out)
			continue
		}
		for _, v := range config.Vars(tt.command) {
			def := v.Default
			switch {
			case v.Required:
				def = "required"
			case def == "":
				def = "-"
			}
			if !hasRow(out, v.Name, def) {
				t.Errorf("worker %q does not list %s %s:\n%s", tt.args, v.Name, def, out)
			}
		}
	}
	// The subcommands' help lists only what they read.
	if _, out, _ := runWorkerCmd(t, nil, "migrate", "-h"); strings.Contains(out, "NATS_URL") || strings.Contains(out, "BATCH_SIZE") {
		t.Errorf("worker migrate -h lists the worker's variables:\n%s", out)
	}
}

func TestUsageAndConfigurationErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // on stderr
	}{
		{"unknown command", nil, []string{"-x"}, []string{`worker: unknown command "-x"`, "usage:"}},
		{"unknown command word", nil, []string{"purge"}, []string{`worker: unknown command "purge"`, "usage:"}},
		{"help of an unknown command", nil, []string{"help", "purge"}, []string{`no help for "purge"`, "usage:"}},
		{"worker with an argument", nil, []string{"worker", "now"}, []string{`worker worker: unexpected argument "now"`, "usage:"}},
		{"migrate with an argument", nil, []string{"migrate", "up"}, []string{`worker migrate: unexpected argument "up"`, "usage:"}},
		{"worker without configuration", nil, nil, []string{"DATABASE_URL: is required", "ENCRYPTION_KEYS", "worker -h lists every variable"}},
		{"migrate without DATABASE_URL", nil, []string{"migrate"}, []string{"DATABASE_URL: is required", "worker migrate -h"}},
		{"bad LOG_FORMAT", map[string]string{"LOG_FORMAT": "yaml", "DATABASE_URL": "postgres://u@h/db"}, []string{"migrate"},
			[]string{`LOG_FORMAT: must be json or text, got "yaml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runWorkerCmd(t, tt.env, tt.args...)
			if code != 2 || out != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing on stdout", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// worker migrate logs in the format LOG_FORMAT names, JSON by default.
func TestMigrateLogFormat(t *testing.T) {
	dsn := testenv.Postgres(t)

	code, out, errOut := runWorkerCmd(t, map[string]string{"DATABASE_URL": dsn}, "migrate")
	var rec map[string]any
	if code != 0 || errOut != "" || json.Unmarshal([]byte(out), &rec) != nil || rec["msg"] != "database schema is up to date" {
		t.Errorf("migrate: exit %d, stderr %q, stdout %q; want one JSON record", code, errOut, out)
	}

	code, out, errOut = runWorkerCmd(t, map[string]string{"DATABASE_URL": dsn, "LOG_FORMAT": "text"}, "migrate")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "time=") || !strings.HasSuffix(out, ` level=INFO msg="database schema is up to date"`+"\n") {
		t.Errorf("migrate with LOG_FORMAT=text: exit %d, stderr %q, stdout %q; want one text line", code, errOut, out)
	}
}
