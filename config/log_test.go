package config_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
)

func TestLoadLog(t *testing.T) {
	tests := []struct {
		env     map[string]string
		def     config.LogFormat
		want    config.Log
		wantErr string
	}{
		{nil, config.LogJSON, config.Log{Format: config.LogJSON}, ""},
		{nil, config.LogText, config.Log{Format: config.LogText}, ""},
		{map[string]string{"LOG_FORMAT": "TEXT", "LOG_LEVEL": "debug"}, config.LogJSON, config.Log{Level: -4, Format: config.LogText}, ""},
		{map[string]string{"LOG_FORMAT": "json"}, config.LogText, config.Log{Format: config.LogJSON}, ""},
		{map[string]string{"LOG_FORMAT": "logfmt", "LOG_LEVEL": "loud"}, config.LogJSON, config.Log{}, "LOG_LEVEL"},
		{map[string]string{"LOG_FORMAT": "logfmt"}, config.LogJSON, config.Log{}, `LOG_FORMAT: must be json or text, got "logfmt"`},
	}
	for _, tt := range tests {
		got, err := config.LoadLog(workerEnv(tt.env), tt.def)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadLog(%v) err = %v, want %q", tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("LoadLog(%v, %s) = %+v, %v; want %+v", tt.env, tt.def, got, err, tt.want)
		}
	}
}

func TestLogFormats(t *testing.T) {
	for format, want := range map[config.LogFormat]string{
		config.LogJSON: `{"time":`,
		config.LogText: `time=`,
	} {
		var b bytes.Buffer
		config.Log{Format: format}.Logger(&b).Debug("hidden")
		config.Log{Format: format}.Logger(&b).Info("shown", "k", "v")
		if out := b.String(); !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 || strings.Contains(out, "hidden") {
			t.Errorf("%s: %q", format, out)
		}
	}
}
