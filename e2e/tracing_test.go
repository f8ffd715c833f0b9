package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// The tests below install an in-memory recorder as the process's tracer
// provider, which the in-process API and worker use: what they check is what
// an OTLP collector would receive. None of them runs in parallel.

// One reading's spans, from the API's request to the worker's commit, share
// one trace: request → publish → (NATS headers) → processing → batch →
// INSERT; the batch links to the reading's processing span; and the log
// lines of the request and of the reading's batch carry the trace id.
func TestTracingOneReadingOneTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	s := newStack(t, nil)
	s.startWorker()

	id := s.accept("/telemetry/gps", map[string]any{
		"device_id": "traced-1", "timestamp": time.Now().Unix(), "latitude": -23.55, "longitude": -46.63,
	})
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, id)

	var tr readingTrace
	s.eventually("the reading's spans, from the request to the commit", func() (bool, string) {
		tr = findReadingTrace(rec, "POST /telemetry/gps", "gps", id)
		return tr.complete(), tr.String()
	})
	tr.checkChain(t)
	if got := tracingtest.Attr(tr.server, "http.response.status_code"); got != "202" {
		t.Errorf("request span status code %q", got)
	}
	if tr.server.SpanKind() != trace.SpanKindServer || tr.send.SpanKind() != trace.SpanKindProducer ||
		tr.process.SpanKind() != trace.SpanKindConsumer || tr.insert.SpanKind() != trace.SpanKindClient {
		t.Errorf("span kinds: %v %v %v %v", tr.server.SpanKind(), tr.send.SpanKind(), tr.process.SpanKind(), tr.insert.SpanKind())
	}

	// The log lines: the API's access log line, and the worker's line about
	// the batch that stored the reading.
	traceID := tr.server.SpanContext().TraceID().String()
	msgs := logMessages(s.logs.String(), traceID)
	if !msgs["http request"] || !msgs["batch stored"] {
		t.Errorf("log lines carrying trace id %s: %v", traceID, msgs)
	}
}

// Each reading of POST /telemetry/batch is published under its own span in
// the request's trace, and processed in that trace, whichever worker batch
// it lands in.
func TestTracingBatchRequest(t *testing.T) {
	rec := tracingtest.Record(t)
	s := newStack(t, nil)
	s.startWorker()

	now := time.Now().Unix()
	status, out := s.post("/telemetry/batch", []map[string]any{
		{"type": "gps", "device_id": "traced-2", "timestamp": now, "latitude": 1.5, "longitude": 2.5},
		{"type": "gyroscope", "device_id": "traced-2", "timestamp": now, "x": 0.1, "y": 0.2, "z": 0.3},
	}, nil)
	if status != http.StatusAccepted {
		t.Fatalf("POST /telemetry/batch = %d %v", status, out)
	}
	results := out["results"].([]any)
	gpsID, _ := results[0].(map[string]any)["id"].(string)
	gyroID, _ := results[1].(map[string]any)["id"].(string)
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, gpsID)
	s.waitCount(1, `SELECT count(*) FROM gyroscope WHERE message_id = $1`, gyroID)

	var gps, gyro readingTrace
	s.eventually("both readings' spans", func() (bool, string) {
		gps = findReadingTrace(rec, "POST /telemetry/batch", "gps", gpsID)
		gyro = findReadingTrace(rec, "POST /telemetry/batch", "gyroscope", gyroID)
		return gps.complete() && gyro.complete(), gps.String() + "; " + gyro.String()
	})
	gps.checkChain(t)
	gyro.checkChain(t)
	if gps.server.SpanContext().SpanID() != gyro.server.SpanContext().SpanID() || gps.send.SpanContext().SpanID() == gyro.send.SpanContext().SpanID() {
		t.Errorf("the readings were not published under one request span with a span each")
	}
}

// A photo's processing holds its Rekognition calls and its INSERT, in the
// trace of the request that sent it.
func TestTracingPhoto(t *testing.T) {
	rec := tracingtest.Record(t)
	s := newStack(t, nil)
	s.startWorker()

	id := s.accept("/telemetry/photo", map[string]any{
		"device_id": "traced-3", "timestamp": time.Now().Unix(),
		"photo": base64.StdEncoding.EncodeToString(readFixture(t, "grace_hopper.jpg")),
	})
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1`, id)

	var tr readingTrace
	s.eventually("the photo's spans", func() (bool, string) {
		tr = findReadingTrace(rec, "POST /telemetry/photo", "photo", id)
		ok := tr.server != nil && tr.send != nil && tr.process != nil && tr.insert != nil
		return ok && len(tr.rekognition) >= 2, tr.String()
	})
	if tr.send.Parent().SpanID() != tr.server.SpanContext().SpanID() ||
		tr.process.Parent().SpanID() != tr.send.SpanContext().SpanID() ||
		tr.insert.Parent().SpanID() != tr.process.SpanContext().SpanID() {
		t.Errorf("photo chain: %s", tr)
	}
	for _, r := range tr.rekognition {
		if r.Parent().SpanID() != tr.process.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the photo's processing", r.Name())
		}
	}
}

// readingTrace is the spans of one reading's trace that the tests check.
type readingTrace struct {
	server, send, process, batch, insert sdktrace.ReadOnlySpan
	rekognition                          []sdktrace.ReadOnlySpan
}

// findReadingTrace finds the reading id's process span (its
// messaging.message.id), then the spans of its trace: the request's (route),
// the publish that sent it, the batch linking to it and its INSERT.
func findReadingTrace(rec *tracetest.SpanRecorder, route, typ, id string) readingTrace {
	var tr readingTrace
	for _, s := range tracingtest.Named(rec, "process telemetry."+typ) {
		if tracingtest.Attr(s, "messaging.message.id") == id {
			tr.process = s
		}
	}
	if tr.process == nil {
		return tr
	}
	for _, s := range tracingtest.InTrace(rec, tr.process.SpanContext().TraceID()) {
		switch {
		case s.Name() == route:
			tr.server = s
		case s.Name() == "send telemetry."+typ && s.SpanContext().SpanID() == tr.process.Parent().SpanID():
			tr.send = s
		case strings.HasPrefix(s.Name(), "Rekognition."):
			tr.rekognition = append(tr.rekognition, s)
		}
	}
	// The batch is in the trace of its first message, which may be another
	// reading's: found by its link.
	for _, s := range tracingtest.Named(rec, "batch telemetry."+typ) {
		for _, l := range s.Links() {
			if l.SpanContext.SpanID() == tr.process.SpanContext().SpanID() {
				tr.batch = s
			}
		}
	}
	parent := tr.process
	if tr.batch != nil {
		parent = tr.batch
	}
	for _, s := range tracingtest.InTrace(rec, parent.SpanContext().TraceID()) {
		if s.Name() == "INSERT "+typ && s.Parent().SpanID() == parent.SpanContext().SpanID() {
			tr.insert = s
		}
	}
	return tr
}

func (tr readingTrace) complete() bool {
	return tr.server != nil && tr.send != nil && tr.process != nil && tr.batch != nil && tr.insert != nil
}

// checkChain checks the parents of a GPS or gyroscope reading's spans, and
// that the batch and its INSERT are in the reading's trace when the reading
// came first in its batch.
func (tr readingTrace) checkChain(t *testing.T) {
	t.Helper()
	if !tr.complete() {
		t.Fatalf("spans missing: %s", tr)
	}
	id := tr.server.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{tr.send, tr.process} {
		if s.SpanContext().TraceID() != id {
			t.Errorf("%s is in trace %s, the request in %s", s.Name(), s.SpanContext().TraceID(), id)
		}
	}
	if tr.send.Parent().SpanID() != tr.server.SpanContext().SpanID() {
		t.Errorf("publish span's parent %s, want the request's %s", tr.send.Parent().SpanID(), tr.server.SpanContext().SpanID())
	}
	if !tr.process.Parent().IsRemote() || tr.process.Parent().SpanID() != tr.send.SpanContext().SpanID() {
		t.Errorf("process span's parent %v, want the publish span through the message headers", tr.process.Parent())
	}
	if tr.batch.Parent().SpanID() == tr.process.SpanContext().SpanID() {
		// First in its batch: the batch and the INSERT are in the reading's trace.
		if tr.batch.SpanContext().TraceID() != id || tr.insert.SpanContext().TraceID() != id {
			t.Errorf("batch or INSERT outside the reading's trace: %s", tr)
		}
	}
	if tr.insert.Parent().SpanID() != tr.batch.SpanContext().SpanID() {
		t.Errorf("INSERT's parent %s, want the batch %s", tr.insert.Parent().SpanID(), tr.batch.SpanContext().SpanID())
	}
}

func (tr readingTrace) String() string {
	name := func(s sdktrace.ReadOnlySpan) string {
		if s == nil {
			return "-"
		}
		return fmt.Sprintf("%s[%s/%s←%s]", s.Name(), s.SpanContext().TraceID().String()[:8], s.SpanContext().SpanID(), s.Parent().SpanID())
	}
	var rk []string
	for _, s := range tr.rekognition {
		rk = append(rk, name(s))
	}
	return fmt.Sprintf("request %s, publish %s, process %s, batch %s, insert %s, rekognition %v",
		name(tr.server), name(tr.send), name(tr.process), name(tr.batch), name(tr.insert), rk)
}

// logMessages returns the messages of the JSON log lines that carry traceID.
func logMessages(logs, traceID string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg     string `json:"msg"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.TraceID == traceID {
			out[rec.Msg] = true
		}
	}
	return out
}

// The real binaries, run as deployed with OTEL_EXPORTER_OTLP_ENDPOINT
// pointing at an OTLP/HTTP collector, export a reading's spans under their
// service names, in one trace from the api's request to the worker's
// INSERT, flush them when they stop, and write the trace id in their JSON
// log lines.
func TestTracingBinariesExportOverOTLP(t *testing.T) {
	apiBin, workerBin := buildCommand(t, "api"), buildCommand(t, "worker")
	collector := newCollector(t)
	s := newStack(t, nil)
	otel := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_BSP_SCHEDULE_DELAY":     "100", // ms: export soon, the test need not wait for the stop
	}
	addr := freeAddr(t)
	apiEnv := map[string]string{"HTTP_ADDR": addr, "ADMIN_ADDR": "127.0.0.1:0"}
	// GPS only: the worker binary needs no Rekognition.
	workerEnv := map[string]string{"ADMIN_ADDR": "127.0.0.1:0", "REKOGNITION_COLLECTION_ID": ""}
	for k, v := range otel {
		apiEnv[k], workerEnv[k] = v, v
	}
	worker := s.startProcess(workerBin, workerEnv)
	api := s.startProcess(apiBin, apiEnv)

	var id string
	s.eventually("the api binary accepting", func() (bool, string) {
		b, _ := json.Marshal(map[string]any{"device_id": "traced-bin", "timestamp": time.Now().Unix(), "latitude": 1.0, "longitude": 2.0})
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/telemetry/gps", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", apiSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		id, _ = out["id"].(string)
		return resp.StatusCode == http.StatusAccepted, fmt.Sprint(resp.StatusCode)
	})
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, id)
	api.signal(t, syscall.SIGTERM, 30*time.Second)
	worker.signal(t, syscall.SIGTERM, 30*time.Second)

	// The process span names the reading; its trace holds the rest.
	spans := collector.spans()
	var traceID string
	for _, sp := range spans {
		if sp.name == "process telemetry.gps" && sp.attrs["messaging.message.id"] == id {
			traceID = sp.traceID
		}
	}
	want := map[string]string{ // span → service
		"POST /telemetry/gps":   tracing.ServiceAPI,
		"send telemetry.gps":    tracing.ServiceAPI,
		"process telemetry.gps": tracing.ServiceWorker,
		"batch telemetry.gps":   tracing.ServiceWorker,
		"INSERT gps":            tracing.ServiceWorker,
	}
	got := map[string]string{}
	for _, sp := range spans {
		if sp.traceID == traceID && want[sp.name] != "" {
			got[sp.name] = sp.service
		}
	}
	if traceID == "" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("spans of the reading's trace %q: %v, want %v (all exported: %d)", traceID, got, want, len(spans))
	}
	msgs := logMessages(s.logs.String(), traceID)
	if !msgs["http request"] || !msgs["batch stored"] {
		t.Errorf("the binaries' log lines carrying trace id %s: %v", traceID, msgs)
	}
}

// collector is an OTLP/HTTP trace receiver: it decodes what it is sent.
type collector struct {
	*httptest.Server
	mu       sync.Mutex
	received []exportedSpan
}

type exportedSpan struct {
	service, name, traceID string
	attrs                  map[string]string
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, rs := range req.ResourceSpans {
			var service string
			for _, kv := range rs.Resource.GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					attrs := map[string]string{}
					for _, kv := range sp.Attributes {
						attrs[kv.Key] = kv.Value.GetStringValue()
					}
					c.received = append(c.received, exportedSpan{service: service, name: sp.Name,
						traceID: hex.EncodeToString(sp.TraceId), attrs: attrs})
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) spans() []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]exportedSpan(nil), c.received...)
}
