package config_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/tracing"
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

func TestLoadTracing(t *testing.T) {
	const base, full = "http://otel-collector:4318", "https://otlp.example/v1/traces"
	tests := []struct {
		env     map[string]string
		want    tracing.Config
		wantErr string
	}{
		{nil, tracing.Config{}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": base}, tracing.Config{Endpoint: base}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": full}, tracing.Config{TracesEndpoint: full}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_SDK_DISABLED": "TRUE"}, tracing.Config{}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": base, "OTEL_SDK_DISABLED": "false"}, tracing.Config{Endpoint: base}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4318"}, tracing.Config{}, "OTEL_EXPORTER_OTLP_ENDPOINT: must be an http or https URL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://x:4317"}, tracing.Config{}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_SDK_DISABLED": "yes"}, tracing.Config{}, `OTEL_SDK_DISABLED: must be true or false, got "yes"`},
	}
	for _, tt := range tests {
		got, err := config.LoadTracing(workerEnv(tt.env))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadTracing(%v) err = %v, want %q", tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("LoadTracing(%v) = %+v, %v; want %+v", tt.env, got, err, tt.want)
		}
	}
}

// A record logged with a span's context carries its trace id, in both
// formats; without one the line is as before.
func TestLoggerAddsTraceID(t *testing.T) {
	tracingtest.Record(t)
	ctx, span := tracing.Start(context.Background(), "request", 0)
	defer span.End()
	id := span.SpanContext().TraceID().String()
	for format, want := range map[config.LogFormat]string{
		config.LogJSON: `"trace_id":"` + id + `"`,
		config.LogText: `trace_id=` + id,
	} {
		var b bytes.Buffer
		log := config.Log{Format: format}.Logger(&b)
		log.InfoContext(ctx, "traced")
		log.Info("untraced")
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], want) || strings.Contains(lines[1], "trace_id") {
			t.Errorf("%s: %q", format, lines)
		}
	}
}
