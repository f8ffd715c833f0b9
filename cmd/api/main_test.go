package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
)

func runAPI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help", "help"} {
		code, out, errOut := runAPI(t, nil, arg)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "api: the challenge-v3 ingest API.") {
			t.Errorf("api %s: exit %d, stderr %q, stdout:\n%s", arg, code, errOut, out)
			continue
		}
		for _, v := range config.Vars(config.CommandAPI) {
			if !strings.Contains(out, "\n  "+v.Name+" ") {
				t.Errorf("api %s does not list %s:\n%s", arg, v.Name, out)
			}
		}
		if !hasRow(out, "RATE_LIMIT_RPS", "10") || !hasRow(out, "API_KEYS", "required") || !hasRow(out, "LOG_FORMAT", "json") {
			t.Errorf("api %s: defaults missing:\n%s", arg, out)
		}
	}
}

func TestUsageAndConfigurationErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // on stderr
	}{
		{"unknown argument", nil, []string{"serve"}, []string{`api: unexpected argument "serve"`, "usage:"}},
		{"help with more", nil, []string{"-h", "extra"}, []string{`unexpected argument "-h"`, "usage:"}},
		{"no API_KEYS", nil, nil, []string{"API_KEYS: is required", "api -h lists every variable"}},
		{"bad LOG_FORMAT", map[string]string{"LOG_FORMAT": "yaml", "API_KEYS": "dev:0123456789abcdef0123:ingest"},
			nil, []string{`LOG_FORMAT: must be json or text, got "yaml"`}},
		{"bad OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "API_KEYS": "dev:0123456789abcdef0123:ingest"},
			nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT: must be an http or https URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runAPI(t, tt.env, tt.args...)
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

// hasRow reports whether the help text has a variable row name, def.
func hasRow(help, name, def string) bool {
	for _, line := range strings.Split(help, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == name && f[1] == def {
			return true
		}
	}
	return false
}
