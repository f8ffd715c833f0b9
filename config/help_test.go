package config_test

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
)

// helpLoaders are the loaders each command's main calls, returning what
// they loaded. The -h table of a command must match what these read.
var helpLoaders = map[string]func(config.Getenv) []any{
	config.CommandAPI: func(g config.Getenv) []any {
		c, err1 := config.LoadAPI(g)
		l, err2 := config.LoadLog(g, config.LogJSON)
		tr, err3 := config.LoadTracing(g)
		return []any{c, err1, l, err2, tr, err3}
	},
	config.CommandWorker: func(g config.Getenv) []any {
		c, err1 := config.LoadWorker(g)
		l, err2 := config.LoadLog(g, config.LogJSON)
		tr, err3 := config.LoadTracing(g)
		return []any{c, err1, l, err2, tr, err3}
	},
	config.CommandMigrate: func(g config.Getenv) []any {
		c, err1 := config.LoadMigrate(g)
		l, err2 := config.LoadLog(g, config.LogJSON)
		return []any{c, err1, l, err2}
	},
	config.CommandDLQ: func(g config.Getenv) []any {
		c, err := config.LoadDLQ(g)
		return []any{c, err}
	},
	config.CommandRekey: func(g config.Getenv) []any {
		c, err := config.LoadRekey(g)
		return []any{c, err}
	},
}

// requiredEnv holds a valid value of each required variable.
var requiredEnv = map[string]string{
	"API_KEYS":       "dev:0123456789abcdef0123:ingest+read",
	"DATABASE_URL":   "postgres://app:pw@db:5432/telemetry",
	"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
}

// Every variable a loader reads is in the command's -h table, and every row
// of the table (but those the AWS SDK reads itself) is read by the loader.
func TestHelpListsEveryVariableTheLoadersRead(t *testing.T) {
	for cmd, load := range helpLoaders {
		t.Run(cmd, func(t *testing.T) {
			read := map[string]bool{}
			load(func(name string) string { read[name] = true; return "" })

			listed := map[string]bool{}
			for _, v := range config.Vars(cmd) {
				if listed[v.Name] {
					t.Errorf("%s is listed twice", v.Name)
				}
				listed[v.Name] = true
				switch {
				case v.SDK && read[v.Name]:
					t.Errorf("%s is marked SDK, but the loader reads it", v.Name)
				case !v.SDK && !read[v.Name]:
					t.Errorf("`%s -h` lists %s, which the loader does not read (remove the row, or mark it SDK)", cmd, v.Name)
				}
			}
			for name := range read {
				if !listed[name] {
					t.Errorf("the loader reads %s, which `%s -h` does not list (add it to config/help.go)", name, cmd)
				}
			}
		})
	}
}

// Each default the table shows, written out, loads to exactly what leaving
// the variable unset loads to.
func TestHelpDefaultsAreTheLoadersDefaults(t *testing.T) {
	for cmd, load := range helpLoaders {
		t.Run(cmd, func(t *testing.T) {
			explicit := map[string]string{}
			for k, v := range requiredEnv {
				explicit[k] = v
			}
			for _, v := range config.Vars(cmd) {
				if v.Default != "" {
					explicit[v.Name] = v.Default
				}
				if v.Required && requiredEnv[v.Name] == "" {
					t.Errorf("%s is required; give requiredEnv a value for it", v.Name)
				}
			}
			implicit := load(func(name string) string { return requiredEnv[name] })
			got := load(func(name string) string { return explicit[name] })
			for i := 1; i < len(implicit); i += 2 {
				if implicit[i] != nil {
					t.Fatalf("loading with only the required variables: %v", implicit[i])
				}
			}
			if !reflect.DeepEqual(got, implicit) {
				t.Errorf("the defaults of `%s -h` load differently from the loader's own:\n  written out %+v\n  unset       %+v", cmd, got, implicit)
			}
		})
	}
}

func TestWriteVars(t *testing.T) {
	var b bytes.Buffer
	if err := config.WriteVars(&b, config.CommandWorker); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != len(config.Vars(config.CommandWorker))+1 || strings.Fields(lines[0])[0] != "VARIABLE" {
		t.Fatalf("table:\n%s", b.String())
	}
	for _, want := range [][]string{
		{"DATABASE_URL", "required"},
		{"BATCH_SIZE", "500"},
		{"LOG_FORMAT", "json"},
		{"REKOGNITION_COLLECTION_ID", "-"},
	} {
		if !slices.ContainsFunc(lines, func(l string) bool {
			f := strings.Fields(l)
			return len(f) > 2 && f[0] == want[0] && f[1] == want[1]
		}) {
			t.Errorf("no row %q in\n%s", want, b.String())
		}
	}
	if config.Vars("worker purge") != nil {
		t.Error("Vars of an unknown command is not nil")
	}
}
