package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// A batch's accepted readings are each stored once, with their audit row;
// a retry with the same Idempotency-Key stores nothing more.
func TestBatchReadingsAreStoredOnce(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()

	var batch []map[string]any
	for i := range 30 {
		r := map[string]any{"device_id": fmt.Sprintf("batch-%d", i%4), "timestamp": time.Now().Unix() - int64(i)}
		if i%2 == 0 {
			r["type"], r["latitude"], r["longitude"] = "gps", float64(i), 1.5
		} else {
			r["type"], r["x"], r["y"], r["z"] = "gyroscope", float64(i), 0, -1
		}
		batch = append(batch, r)
	}
	batch = append(batch, map[string]any{"type": "gps", "device_id": "batch-0"}) // invalid
	hdr := map[string]string{"Idempotency-Key": "e2e-batch-1"}
	status, out := s.post("/telemetry/batch", batch, hdr)
	if status != http.StatusAccepted || out["accepted"] != 30.0 || out["rejected"] != 1.0 {
		t.Fatalf("POST /telemetry/batch = %d %v", status, out)
	}
	var gps, gyro []string
	for i, r := range out["results"].([]any) {
		id, _ := r.(map[string]any)["id"].(string)
		switch {
		case i == 30:
			if id != "" {
				t.Errorf("the invalid reading got id %s", id)
			}
		case i%2 == 0:
			gps = append(gps, id)
		default:
			gyro = append(gyro, id)
		}
	}
	if status, again := s.post("/telemetry/batch", batch, hdr); status != http.StatusAccepted || fmt.Sprint(again) != fmt.Sprint(out) {
		t.Fatalf("retry = %d %v, want the first answer", status, again)
	}
	s.waitCount(15, `SELECT count(*) FROM gps WHERE message_id = ANY($1::uuid[])`, gps)
	s.waitCount(15, `SELECT count(*) FROM gyroscope WHERE message_id = ANY($1::uuid[])`, gyro)
	s.waitCount(30, `SELECT count(*) FROM audit_log WHERE action IN ('gps.stored', 'gyroscope.stored')`)
	time.Sleep(300 * time.Millisecond) // a duplicate would land by now
	if n := s.count(`SELECT count(*) FROM gps`) + s.count(`SELECT count(*) FROM gyroscope`); n != 30 {
		t.Errorf("%d rows stored, want 30", n)
	}
	if n := s.count(`SELECT count(*) FROM audit_log WHERE action IN ('gps.stored', 'gyroscope.stored')`); n != 30 {
		t.Errorf("%d audit rows, want 30", n)
	}
}
