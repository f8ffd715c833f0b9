package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestDocumentLoadsAsOpenAPI31(t *testing.T) {
	doc := Document(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
}

// recorder is a testing.TB that keeps what the transport reports.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.TB.FailNow()
}

func (r *recorder) reported() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}

// answer is a canned response of the fake server.
type answer struct {
	status int
	header map[string]string
	body   string
}

const (
	reqID   = "01938f5e-7c2a-7b1e-9f4e-3c1d2a6b8e91"
	readID  = "01938f5e-7c2a-7b1e-9f4e-3c1d2a6b8e90"
	problem = `{"type":"https://example.test/docs#x","title":"t","status":%d,"detail":"d","instance":"/x","request_id":"` + reqID + `"}`
	gpsItem = `{"id":"` + readID + `","device_id":"00:0a:95:9d:68:16","timestamp":"2026-11-28T10:00:00Z","received_at":"2026-11-28T10:00:01Z","stored_at":"2026-11-28T10:00:02Z","latitude":-23.5,"longitude":-46.6}`
)

func problemAnswer(status int, header ...string) answer {
	h := map[string]string{"Content-Type": "application/problem+json"}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return answer{status, h, fmt.Sprintf(problem, status)}
}

func jsonAnswer(status int, body string, header ...string) answer {
	h := map[string]string{"Content-Type": "application/json"}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return answer{status, h, body}
}

// exchange sends req to a server that answers a, through Transport, and
// returns what the transport reported and the body the client read.
func exchange(t *testing.T, a answer, req *http.Request) (string, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Request-Id", reqID)
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	defer srv.Close()
	rec := &recorder{TB: t}
	u := srv.URL + req.URL.RequestURI()
	r2, err := http.NewRequest(req.Method, u, req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		r2.GetBody, r2.ContentLength = req.GetBody, req.ContentLength
	}
	r2.Header = req.Header
	resp, err := (&http.Client{Transport: Transport(rec, nil)}).Do(r2)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.reported(), string(b)
}

func newReq(method, target, contentType, body string, header ...string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if body != "" {
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Header.Set("X-API-Key", "k")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func multipartPhoto(t *testing.T, fields map[string]string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("photo", "photo.bin")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write([]byte("\x89PNG\r\n\x1a\n not really"))
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.String()
}

func TestTransport(t *testing.T) {
	gps := `{"device_id":"AA-BB-CC-DD-EE-FF","timestamp":1764324000.5,"latitude":0,"longitude":0}`
	accepted := `{"id":"` + readID + `","status":"accepted"}`
	mpType, mpBody := multipartPhoto(t, map[string]string{"device_id": "cam-1", "timestamp": "1764324000"})
	mpTypeBad, mpBodyBad := multipartPhoto(t, map[string]string{"device_id": "cam 1", "timestamp": "1764324000"})
	page := `{"items":[` + gpsItem + `],"next_cursor":null}`
	track := `{"type":"Feature","geometry":{"type":"LineString","coordinates":[[-46.6,-23.5],[-46.7,-23.6]]},"properties":{"device_id":"d","timestamps":["2026-11-28T10:00:00Z","2026-11-28T10:00:10Z"],"truncated":false}}`

	tests := []struct {
		name string
		req  *http.Request
		ans  answer
		want string // a substring of what is reported; "" = nothing
	}{
		{"ingest 202", newReq("POST", "/telemetry/gps", "application/json", gps), jsonAnswer(202, accepted), ""},
		{"ingest 202 replayed", newReq("POST", "/telemetry/gps", "application/json", gps, "Idempotency-Key", "k-1"),
			jsonAnswer(202, accepted, "Idempotent-Replayed", "true"), ""},
		{"202 body off the schema", newReq("POST", "/telemetry/gps", "application/json", gps),
			jsonAnswer(202, `{"id":"`+readID+`","status":"queued"}`), "response body doesn't match schema"},
		{"undocumented status", newReq("POST", "/telemetry/gps", "application/json", gps), jsonAnswer(201, accepted), "status 201 is not documented"},
		{"undocumented content type", newReq("POST", "/telemetry/gps", "application/json", gps),
			answer{202, map[string]string{"Content-Type": "text/plain"}, "ok"}, "text/plain"},
		{"negative test: invalid request refused", newReq("POST", "/telemetry/gps", "application/json", `{"device_id":"x"}`),
			problemAnswer(400), ""},
		{"invalid request accepted", newReq("POST", "/telemetry/gps", "application/json", `{"device_id":"x"}`),
			jsonAnswer(202, accepted), "accepted a request the OpenAPI document calls invalid"},
		{"missing key refused", newReq("POST", "/telemetry/gps", "application/json", gps, "X-API-Key", ""),
			problemAnswer(401, "WWW-Authenticate", `APIKey realm="telemetry", header="X-API-Key"`), ""},
		{"missing key accepted", newReq("POST", "/telemetry/gps", "application/json", gps, "X-API-Key", ""),
			jsonAnswer(202, accepted), "X-API-Key is missing"},
		{"401 without WWW-Authenticate", newReq("POST", "/telemetry/gps", "application/json", gps, "X-API-Key", ""),
			problemAnswer(401), `"WWW-Authenticate" missing`},
		{"429 without Retry-After", newReq("POST", "/telemetry/gps", "application/json", gps),
			problemAnswer(429, "RateLimit-Limit", "1", "RateLimit-Remaining", "0", "RateLimit-Reset", "1", "RateLimit-Policy", "1;w=1"), `"Retry-After" missing`},
		{"problem with an extra member", newReq("POST", "/telemetry/gps", "application/json", gps),
			answer{400, map[string]string{"Content-Type": "application/problem+json"}, `{"type":"https://x.test/#a","title":"t","status":400,"hint":"h"}`}, "hint"},
		{"multipart photo", newReq("POST", "/telemetry/photo", mpType, mpBody), jsonAnswer(202, accepted), ""},
		{"multipart photo, bad device accepted", newReq("POST", "/telemetry/photo", mpTypeBad, mpBodyBad), jsonAnswer(202, accepted), "device_id"},
		{"unknown route 404", newReq("GET", "/nope", "", ""), problemAnswer(404), ""},
		{"unknown method 405", newReq("DELETE", "/telemetry/gps", "", ""), problemAnswer(405, "Allow", "GET, POST"), ""},
		{"unknown route 200", newReq("GET", "/nope", "", ""), jsonAnswer(200, `{}`), "not in the OpenAPI document"},
		{"list", newReq("GET", "/telemetry/gps?device_id=truck-7&limit=10&order=asc", "", ""), jsonAnswer(200, page), ""},
		{"list, limit out of range refused", newReq("GET", "/telemetry/gps?limit=0", "", ""), problemAnswer(400), ""},
		{"list, limit out of range accepted", newReq("GET", "/telemetry/gps?limit=5000", "", ""), jsonAnswer(200, page), "limit"},
		{"list item missing a field", newReq("GET", "/telemetry/gps", "", ""),
			jsonAnswer(200, `{"items":[{"id":"`+readID+`"}],"next_cursor":null}`), "response body doesn't match schema"},
		{"track geo+json", newReq("GET", "/devices/d/track", "", ""),
			answer{200, map[string]string{"Content-Type": "application/geo+json"}, track}, ""},
		{"track with latitude out of range", newReq("GET", "/devices/d/track", "", ""),
			answer{200, map[string]string{"Content-Type": "application/geo+json"}, strings.Replace(track, "-23.5", "-123.5", 1)}, "response body doesn't match schema"},
		{"image", newReq("GET", "/telemetry/photo/"+readID+"/image", "", ""),
			answer{200, map[string]string{"Content-Type": "image/png", "ETag": `"abc"`, "Cache-Control": "private"}, "\x89PNG"}, ""},
		{"image without ETag", newReq("GET", "/telemetry/photo/"+readID+"/image", "", ""),
			answer{200, map[string]string{"Content-Type": "image/png", "Cache-Control": "private"}, "\x89PNG"}, `"ETag" missing`},
		{"image as gif", newReq("GET", "/telemetry/photo/"+readID+"/image", "", ""),
			answer{200, map[string]string{"Content-Type": "image/gif", "ETag": `"abc"`, "Cache-Control": "private"}, "GIF89a"}, "image/gif"},
		{"image 304", newReq("GET", "/telemetry/photo/"+readID+"/image", "", "", "If-None-Match", `"abc"`),
			answer{304, map[string]string{"ETag": `"abc"`}, ""}, ""},
		{"stream", newReq("GET", "/telemetry/stream?types=gps", "", ""),
			answer{200, map[string]string{"Content-Type": "text/event-stream"}, ": heartbeat\n\n"}, ""},
		{"docs page without key", newReq("GET", "/docs", "", "", "X-API-Key", ""),
			answer{200, map[string]string{"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": "default-src 'self'", "Cache-Control": "no-cache"}, "<html>"}, ""},
		{"docs asset", newReq("GET", "/docs/swagger-ui.css", "", "", "X-API-Key", ""),
			answer{200, map[string]string{"Content-Type": "text/css; charset=utf-8", "Content-Security-Policy": "default-src 'self'", "ETag": `"x"`, "Cache-Control": "public"}, "body{}"}, ""},
		{"admin metrics", newReq("GET", "/metrics", "", "", "X-API-Key", ""),
			answer{200, map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, "go_goroutines 7\n"}, ""},
		{"admin path asked of the public listener", newReq("GET", "/metrics", "", "", "X-API-Key", ""),
			problemAnswer(401, "WWW-Authenticate", `APIKey realm="telemetry", header="X-API-Key"`), ""},
		{"admin healthz off the schema", newReq("GET", "/healthz", "", "", "X-API-Key", ""),
			jsonAnswer(200, `{"status":"ok","extra":1}`, "Cache-Control", "no-store"), "response body doesn't match schema"},
		{"admin readyz", newReq("GET", "/readyz", "", "", "X-API-Key", ""),
			jsonAnswer(503, `{"status":"unavailable","reason":"nats not connected"}`, "Cache-Control", "no-store"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, body := exchange(t, tc.ans, tc.req)
			switch {
			case tc.want == "" && got != "":
				t.Errorf("reported:\n%s", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("reported %q, want it to mention %q", got, tc.want)
			}
			if body != tc.ans.body {
				t.Errorf("the client read %q, the server sent %q", body, tc.ans.body)
			}
		})
	}
}

func TestTransportChecksIDs(t *testing.T) {
	// A malformed id refused is a negative test; accepted, the document and
	// the code disagree.
	if got, _ := exchange(t, problemAnswer(400), newReq("GET", "/telemetry/gps/not-a-uuid", "", "")); got != "" {
		t.Errorf("reported:\n%s", got)
	}
	got, _ := exchange(t, jsonAnswer(200, gpsItem), newReq("GET", "/telemetry/gps/not-a-uuid", "", ""))
	if !strings.Contains(got, "accepted a request the OpenAPI document calls invalid") {
		t.Errorf("reported %q", got)
	}
	bad := strings.Replace(gpsItem, `"2026-11-28T10:00:00Z"`, `"yesterday"`, 1)
	if got, _ := exchange(t, jsonAnswer(200, bad), newReq("GET", "/telemetry/gps/"+readID, "", "")); !strings.Contains(got, "date-time") {
		t.Errorf("a timestamp that is not RFC 3339: reported %q", got)
	}
}
