package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// accepted is the set of readings a fault test was answered 202 for: id →
// reading type. Safe for concurrent use by the test's posting goroutines.
type accepted struct {
	mu  sync.Mutex
	ids map[string]models.Type
}

func (a *accepted) add(id string, typ models.Type) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = map[string]models.Type{}
	}
	a.ids[id] = typ
}

func (a *accepted) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

// faultReport is what every fault scenario reports.
type faultReport struct {
	accepted, stored, redelivered int
	deadLettered                  uint64
	recovered                     time.Duration // from the fault's end to the last reading stored
}

// storedExactlyOnce waits until every accepted reading is stored, then
// checks the rows against the set answered 202: every one stored in its
// type's table, none twice, nothing stored that was not accepted, each
// with exactly one audit row naming it. It returns the figures of the run;
// recovered is measured from since.
func (s *stack) storedExactlyOnce(a *accepted, since time.Time) faultReport {
	s.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	want := map[models.Type]int{}
	for _, typ := range a.ids {
		want[typ]++
	}
	for _, typ := range models.Types {
		s.waitCount(want[typ], `SELECT count(*) FROM `+string(typ))
	}
	r := faultReport{accepted: len(a.ids), recovered: time.Since(since)}
	ctx := context.Background()
	for _, typ := range models.Types {
		rows, err := s.db.Query(ctx, `SELECT t.message_id::text, count(*) OVER (PARTITION BY t.message_id),
			(SELECT count(*) FROM audit_log l WHERE l.message_id = t.message_id AND l.action = $1)
			FROM `+string(typ)+` t`, string(typ)+".stored")
		if err != nil {
			s.t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var copies, audits int
			if err := rows.Scan(&id, &copies, &audits); err != nil {
				s.t.Fatal(err)
			}
			r.stored++
			switch {
			case a.ids[id] != typ:
				s.t.Errorf("%s %s is stored but was never answered 202 as one", typ, id)
			case copies != 1:
				s.t.Errorf("%s %s is stored %d times", typ, id, copies)
			case audits != 1:
				s.t.Errorf("%s %s has %d audit rows, want 1", typ, id, audits)
			}
		}
		if err := rows.Err(); err != nil {
			s.t.Fatal(err)
		}
	}
	if n := s.count(`SELECT count(*) FROM audit_log WHERE action LIKE '%.stored'`); n != r.stored {
		s.t.Errorf("%d audit rows of stored readings for %d readings", n, r.stored)
	}
	if r.stored != r.accepted {
		s.t.Errorf("%d readings stored, %d answered 202", r.stored, r.accepted)
	}
	r.redelivered = s.deliveries() - r.accepted
	r.deadLettered = s.dlqCount()
	if r.deadLettered != 0 {
		s.t.Errorf("%d readings dead-lettered", r.deadLettered)
	}
	return r
}

// deliveries counts the deliveries the worker's consumers made, first ones
// and redeliveries alike.
func (s *stack) deliveries() int {
	s.t.Helper()
	n := 0
	for _, typ := range models.Types {
		c, err := s.js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(typ))
		if err != nil {
			s.t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			s.t.Fatal(err)
		}
		n += int(info.Delivered.Consumer)
	}
	return n
}

func (r faultReport) log(t *testing.T, fault string) {
	t.Helper()
	t.Logf("%s: accepted %d, stored %d, redelivered %d, dead-lettered %d, recovered in %s",
		fault, r.accepted, r.stored, r.redelivered, r.deadLettered, r.recovered.Round(time.Millisecond))
}

func gpsBody(device string, i int) map[string]any {
	return map[string]any{"device_id": device, "timestamp": 1764324000 + i,
		"latitude": float64(i%180) - 90, "longitude": float64(i%360) - 180}
}

// The TELEMETRY stream fills up while the worker is stopped: the API
// answers 503 with Retry-After (JetStream refuses the publish: discard-new),
// never a 202 it could not keep; once the worker drains the backlog the
// same readings are accepted again, and every 202 is stored once.
func TestStreamFullRefusesThenResumes(t *testing.T) {
	s := newStack(t, map[string]string{"STREAM_MAX_BYTES": "64KiB"})
	var a accepted
	refused := 0
	for i := 0; refused < 20 && i < 5000; i++ {
		status, out := s.post("/telemetry/gps", gpsBody("truck-full", i), nil)
		switch status {
		case http.StatusAccepted:
			if refused > 0 {
				t.Fatalf("reading %d accepted after a refusal while nothing drains the stream", i)
			}
			a.add(out["id"].(string), models.TypeGPS)
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("reading %d: %d %v", i, status, out)
		}
	}
	if refused == 0 {
		t.Fatalf("%d readings accepted and none refused: the stream never filled", a.len())
	}
	resp := s.rawPost("/telemetry/gps", gpsBody("truck-full", 99999))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a full stream answers %d with Retry-After %q, want 503 with one", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	full := a.len()

	s.startWorker()
	drained := time.Now()
	// Ingestion resumes: the refused readings go in now.
	s.eventually("the API accepting again", func() (bool, string) {
		status, out := s.post("/telemetry/gps", gpsBody("truck-full", 100000), map[string]string{"Idempotency-Key": "resume-probe"})
		if status == http.StatusAccepted {
			a.add(out["id"].(string), models.TypeGPS)
		}
		return status == http.StatusAccepted, fmt.Sprint(status, out)
	})
	for i := range 100 {
		a.add(s.accept("/telemetry/gps", gpsBody("truck-after", i)), models.TypeGPS)
	}
	r := s.storedExactlyOnce(&a, drained)
	r.log(t, "stream full ("+strconv.Itoa(full)+" readings filled 64 KiB, "+strconv.Itoa(refused+1)+" refused with 503)")
}

// rawPost posts a reading and returns the response, for its headers.
func (s *stack) rawPost(path string, body map[string]any) *http.Response {
	s.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.apiURL+path, bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", apiSecret)
	resp, err := openapitest.Client(s.t).Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
