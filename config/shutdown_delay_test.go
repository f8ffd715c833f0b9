package config

import (
	"strings"
	"testing"
	"time"
)

func TestShutdownDelay(t *testing.T) {
	keys := "a:" + goodSecret + ":ingest"
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
		err  string // substring of the error; "" when accepted
	}{
		{"default", map[string]string{}, 0, ""},
		{"explicit zero", map[string]string{"SHUTDOWN_DELAY": "0s"}, 0, ""},
		{"below the default timeout", map[string]string{"SHUTDOWN_DELAY": "15s"}, 15 * time.Second, ""},
		{"negative", map[string]string{"SHUTDOWN_DELAY": "-1s"}, 0, "SHUTDOWN_DELAY: must be a duration of at least 0s"},
		{"not a duration", map[string]string{"SHUTDOWN_DELAY": "15"}, 0, "SHUTDOWN_DELAY: must be a duration"},
		{"equal to the timeout", map[string]string{"SHUTDOWN_DELAY": "25s"}, 0, "SHUTDOWN_DELAY: must be shorter than SHUTDOWN_TIMEOUT (25s)"},
		{"longer than a set timeout", map[string]string{"SHUTDOWN_DELAY": "30s", "SHUTDOWN_TIMEOUT": "10s"}, 0, "SHUTDOWN_DELAY: must be shorter than SHUTDOWN_TIMEOUT (10s)"},
		{"with a longer timeout", map[string]string{"SHUTDOWN_DELAY": "30s", "SHUTDOWN_TIMEOUT": "40s"}, 30 * time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["API_KEYS"] = keys
			c, err := LoadAPI(envMap(tt.env))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.ShutdownDelay != tt.want {
					t.Errorf("ShutdownDelay = %s, want %s", c.ShutdownDelay, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
			if n := strings.Count(err.Error(), "SHUTDOWN_DELAY"); n != 1 {
				t.Errorf("SHUTDOWN_DELAY named %d times, want once:\n%v", n, err)
			}
		})
	}
}

// A configuration built by hand (tests, the dev stack) meets the same rules.
func TestValidateShutdownDelay(t *testing.T) {
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": "a:" + goodSecret + ":ingest"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{-time.Second, c.ShutdownTimeout, 2 * c.ShutdownTimeout} {
		c.ShutdownDelay = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "SHUTDOWN_DELAY") {
			t.Errorf("ShutdownDelay %s: Validate = %v, want SHUTDOWN_DELAY refused", d, err)
		}
	}
	c.ShutdownDelay = c.ShutdownTimeout - time.Second
	if err := c.Validate(); err != nil {
		t.Errorf("ShutdownDelay just under the timeout: %v", err)
	}
}
