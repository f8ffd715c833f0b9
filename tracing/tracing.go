// Package tracing is the system's OpenTelemetry tracing: the set-up of each
// binary's tracer provider, the spans every component starts (HTTP request,
// JetStream publish, a message's processing, a batch, a database statement,
// a Rekognition call, a dead letter), the W3C trace context carried from the
// API to the worker in NATS message headers, and a slog handler that puts
// the trace id in every log line written with a span's context.
//
// Tracing is off unless an OTLP endpoint is configured (config.LoadTracing).
// Off, the global tracer provider stays OpenTelemetry's no-op one and every
// helper here returns at once without allocating (BenchmarkStartOff), so the
// instrumented paths cost nothing measurable.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Service names of the binaries, the resource's service.name unless
// OTEL_SERVICE_NAME overrides it.
const (
	ServiceAPI    = "challenge-api"
	ServiceWorker = "challenge-worker"
)

// Config says where spans are exported; the zero value exports nothing
// (tracing off). config.LoadTracing fills it from the standard variables.
type Config struct {
	// Endpoint is the OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT);
	// spans are sent to its path + "/v1/traces", as the specification says.
	Endpoint string
	// TracesEndpoint is the full URL spans are sent to
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); it wins over Endpoint.
	TracesEndpoint string
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Endpoint != "" || c.TracesEndpoint != "" }

// URL is where spans are sent; "" when tracing is off.
func (c Config) URL() string {
	if c.TracesEndpoint != "" {
		return c.TracesEndpoint
	}
	if c.Endpoint == "" {
		return ""
	}
	return strings.TrimSuffix(c.Endpoint, "/") + "/v1/traces"
}

// Setup installs the global tracer provider of the binary named service when
// cfg is enabled: spans are batched and sent over OTLP/HTTP to cfg.URL(),
// with the SDK's standard variables (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES) applied by the SDK itself. When cfg is not
// enabled it installs nothing, so spans cost nothing.
//
// shutdown sends the spans still buffered and stops the provider; call it
// once, after the binary's work is done, with a deadline. Export failures
// are logged to log as warnings (the SDK retries, then drops the batch):
// tracing never stops or slows the binary.
func Setup(ctx context.Context, service string, cfg Config, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	if !cfg.Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	target := cfg.URL()
	if _, err := url.Parse(target); err != nil {
		return nil, fmt.Errorf("tracing: OTLP endpoint: %w", err)
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(target))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// service.name first, so OTEL_SERVICE_NAME (read by WithFromEnv) wins.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	} else if err != nil {
		log.Warn("tracing: part of the resource could not be read", "err", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: spans not exported", "err", err)
	}))
	otel.SetTracerProvider(tp)
	log.Info("tracing on: spans are exported over OTLP/HTTP", "endpoint", redact(target), "service", service)
	return tp.Shutdown, nil
}

// redact drops the user information of an endpoint URL for the log.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}
