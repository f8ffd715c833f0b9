package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// gpsElem and gyroElem are valid batch readings; bad is one of each's
// fields out of range.
func gpsElem(i int) string {
	return fmt.Sprintf(`{"type":"gps","device_id":"dev-%d","timestamp":%d,"latitude":%d.5,"longitude":2}`, i%3, time.Now().Unix(), i%80)
}

func gyroElem(i int) string {
	return fmt.Sprintf(`{"type":"gyroscope","device_id":"dev-%d","timestamp":%d,"x":%d,"y":0,"z":-1}`, i%3, time.Now().Unix(), i)
}

func array(elems ...string) string { return "[" + strings.Join(elems, ",") + "]" }

func postBatch(s *stack, ct, body string, headers ...string) *http.Response {
	s.t.Helper()
	return s.do(http.MethodPost, "/telemetry/batch", ct, strings.NewReader(body), headers...)
}

// streamMsgs reads back every message on TELEMETRY.
func (s *stack) streamMsgs() []*jetstream.RawStreamMsg {
	s.t.Helper()
	ctx := context.Background()
	st, err := s.js.Stream(ctx, messaging.StreamName)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			s.t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// messageID is the message_id of a message's body.
func messageID(t testing.TB, m *jetstream.RawStreamMsg) string {
	t.Helper()
	var meta models.Meta
	if err := json.Unmarshal(m.Data, &meta); err != nil {
		t.Fatalf("message %d: %v", m.Sequence, err)
	}
	return meta.MessageID.String()
}

// streamMsgIDs maps each message id on TELEMETRY (the message_id of its
// body) to how often it is there.
func (s *stack) streamMsgIDs() map[string]int {
	s.t.Helper()
	ids := map[string]int{}
	for _, m := range s.streamMsgs() {
		ids[messageID(s.t, m)]++
	}
	return ids
}

func TestBatchAllValid(t *testing.T) {
	s := newStack(t, nil)
	var elems []string
	for i := range 50 {
		if i%2 == 0 {
			elems = append(elems, gpsElem(i))
		} else {
			elems = append(elems, gyroElem(i))
		}
	}
	resp := postBatch(s, "application/json", array(elems...))
	wantStatus(t, resp, http.StatusAccepted)
	res := decodeBody[BatchResult](t, resp)
	if res.Accepted != 50 || res.Rejected != 0 || len(res.Results) != 50 {
		t.Fatalf("result = %+v", res)
	}
	onStream := s.streamMsgIDs()
	if len(onStream) != 50 {
		t.Fatalf("%d messages on the stream, want 50", len(onStream))
	}
	for i, r := range res.Results {
		if r.ID == "" || onStream[r.ID] != 1 {
			t.Errorf("reading %d: id %q is %d times on the stream", i, r.ID, onStream[r.ID])
		}
	}
	// The message is the single route's: readable as its type, actor set.
	m := s.lastMsg(models.TypeGyroscope)
	g, err := models.UnmarshalAs[models.Gyroscope](m.Data, models.DefaultLimits())
	if err != nil || g.Actor != "phone" || m.Header.Get(jetstream.MsgIDHeader) != "" {
		t.Errorf("last gyroscope message %s: %+v, %v", m.Data, g, err)
	}
}

func TestBatchPartialInvalidAnswersInOrder(t *testing.T) {
	s := newStack(t, nil)
	body := array(gpsElem(0),
		`{"type":"gps","device_id":"d","timestamp":1,"latitude":91,"longitude":2}`,
		`{"device_id":"d","timestamp":1,"x":1,"y":1,"z":1}`,
		gyroElem(3),
		`{"type":"gyroscope","device_id":"d","timestamp":1,"x":1,"y":1,"z":1,"latitude":3}`,
		`17`,
	)
	resp := postBatch(s, "application/json", body)
	wantStatus(t, resp, http.StatusAccepted)
	res := decodeBody[BatchResult](t, resp)
	if res.Accepted != 2 || res.Rejected != 4 || len(res.Results) != 6 {
		t.Fatalf("result = %+v", res)
	}
	for _, i := range []int{0, 3} {
		if res.Results[i].ID == "" || res.Results[i].Errors != nil {
			t.Errorf("reading %d: %+v, want an id", i, res.Results[i])
		}
	}
	wantField := map[int]string{1: "latitude", 2: "type", 4: "latitude", 5: ""}
	for i, f := range wantField {
		r := res.Results[i]
		if r.ID != "" || len(r.Errors) == 0 || !hasField(r, f) {
			t.Errorf("reading %d: %+v, want an error on %q", i, r, f)
		}
	}
	if n := s.msgCount(); n != 2 {
		t.Errorf("%d messages on the stream, want 2", n)
	}
}

func hasField(r BatchResultItem, f string) bool {
	for _, e := range r.Errors {
		if e.Field == f {
			return true
		}
	}
	return false
}

func TestBatchNoneValidIs400(t *testing.T) {
	s := newStack(t, nil)
	resp := postBatch(s, "application/json", array(`{"type":"gps"}`, `{"type":"photo"}`))
	wantStatus(t, resp, http.StatusBadRequest)
	res := decodeBody[BatchResult](t, resp)
	if res.Accepted != 0 || res.Rejected != 2 || len(res.Results[0].Errors) < 2 {
		t.Errorf("result = %+v", res)
	}
	for _, body := range []string{`[]`, `{"type":"gps"}`, `[1,`, `[] []`} {
		checkProblem(t, postBatch(s, "application/json", body), http.StatusBadRequest)
	}
	checkProblem(t, postBatch(s, "text/plain", array(gpsElem(0))), http.StatusUnsupportedMediaType)
	if n := s.msgCount(); n != 0 {
		t.Errorf("%d messages on the stream, want 0", n)
	}
}

func TestBatchNDJSON(t *testing.T) {
	s := newStack(t, nil)
	body := gpsElem(0) + "\n\n" + gyroElem(1) + "\r\n" + `{"type":"gps"}` + "\n"
	resp := postBatch(s, "application/x-ndjson", body)
	wantStatus(t, resp, http.StatusAccepted)
	res := decodeBody[BatchResult](t, resp)
	if res.Accepted != 2 || res.Rejected != 1 || res.Results[2].Errors == nil {
		t.Fatalf("result = %+v", res)
	}
	if n := s.msgCount(); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

func TestBatchLimits(t *testing.T) {
	s := newStack(t, nil)
	elems := make([]string, MaxBatchReadings+1)
	for i := range elems {
		elems[i] = `{}`
	}
	checkProblem(t, postBatch(s, "application/json", array(elems...)), http.StatusRequestEntityTooLarge)
	checkProblem(t, postBatch(s, "application/x-ndjson", strings.Join(elems, "\n")), http.StatusRequestEntityTooLarge)
	big := array(`{"type":"gps","device_id":"` + strings.Repeat("a", BatchBodyLimit) + `"}`)
	checkProblem(t, postBatch(s, "application/json", big), http.StatusRequestEntityTooLarge)
	if n := s.msgCount(); n != 0 {
		t.Errorf("%d messages, want 0", n)
	}

	// 1,000 readings, each with many bad keys: every reading answered,
	// the answer bounded.
	bad := `{"type":"gps"` + strings.Repeat(`,"k":1`, 30) + `}`
	for i := range elems {
		elems[i] = bad
	}
	resp := postBatch(s, "application/json", array(elems[:MaxBatchReadings]...))
	wantStatus(t, resp, http.StatusBadRequest)
	if resp.ContentLength > 400<<10 {
		t.Errorf("answer is %d bytes", resp.ContentLength)
	}
	res := decodeBody[BatchResult](t, resp)
	if len(res.Results) != MaxBatchReadings || len(res.Results[0].Errors) != models.MaxFieldErrors ||
		len(res.Results[999].Errors) != 1 || res.Results[999].MoreErrors == 0 {
		t.Errorf("results: %d, first %+v, last %+v", len(res.Results), res.Results[0], res.Results[999])
	}
}

func TestBatchRetryWithIdempotencyKey(t *testing.T) {
	s := newStack(t, nil)
	body := array(gpsElem(0), `{"type":"gps"}`, gyroElem(2), gpsElem(3))
	first := decodeBody[BatchResult](t, postBatch(s, "application/json", body, "Idempotency-Key", "batch-1"))
	resp := postBatch(s, "application/json", body, "Idempotency-Key", "batch-1")
	wantStatus(t, resp, http.StatusAccepted)
	if resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Error("retry not marked Idempotent-Replayed")
	}
	again := decodeBody[BatchResult](t, resp)
	if first.Accepted != 3 || fmt.Sprint(first) != fmt.Sprint(again) {
		t.Fatalf("first %+v, retry %+v", first, again)
	}
	onStream := s.streamMsgIDs()
	if len(onStream) != 3 {
		t.Errorf("%d messages after the retry, want 3", len(onStream))
	}
	// With a key each reading's id is its Nats-Msg-Id too: a retry after
	// the key store forgot the batch is still dropped by JetStream.
	for _, m := range s.streamMsgs() {
		if id := messageID(t, m); m.Header.Get(jetstream.MsgIDHeader) != id {
			t.Errorf("message %s has Nats-Msg-Id %q", id, m.Header.Get(jetstream.MsgIDHeader))
		}
	}
	for _, r := range first.Results {
		if r.ID != "" && onStream[r.ID] != 1 {
			t.Errorf("%s is %d times on the stream", r.ID, onStream[r.ID])
		}
	}
	// Another key: new ids; the same key with another body: 422.
	other := decodeBody[BatchResult](t, postBatch(s, "application/json", body, "Idempotency-Key", "batch-2"))
	if other.Results[0].ID == first.Results[0].ID {
		t.Error("another key got the same ids")
	}
	checkProblem(t, postBatch(s, "application/json", array(gpsElem(9)), "Idempotency-Key", "batch-1"), http.StatusUnprocessableEntity)
}

func TestBatchQueueFailsPartWay(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.Topology.MaxBytes = 4 << 10 })
	var elems []string
	for i := range 40 {
		elems = append(elems, gpsElem(i))
	}
	resp := postBatch(s, "application/json", array(elems...), "Idempotency-Key", "k")
	wantStatus(t, resp, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	res := decodeBody[BatchResult](t, resp)
	onStream := s.streamMsgIDs()
	if res.Accepted == 0 || res.Rejected == 0 || res.Accepted != len(onStream) || len(res.Results) != 40 {
		t.Fatalf("accepted %d, rejected %d, %d on the stream", res.Accepted, res.Rejected, len(onStream))
	}
	for i, r := range res.Results {
		if (r.ID != "") == (r.Errors != nil) || (r.ID != "" && onStream[r.ID] != 1) {
			t.Errorf("reading %d: %+v (on the stream %d times)", i, r, onStream[r.ID])
		}
	}
}

func TestBatchNATSDownIs503WithResults(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.PublishTimeout = 300 * time.Millisecond })
	s.nats.Stop()
	resp := postBatch(s, "application/json", array(gpsElem(0), `{"type":"gps"}`))
	wantStatus(t, resp, http.StatusServiceUnavailable)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	res := decodeBody[BatchResult](t, resp)
	if res.Accepted != 0 || res.Rejected != 2 || len(res.Results) != 2 || res.Results[0].Errors == nil || !hasField(res.Results[1], "device_id") {
		t.Errorf("result = %+v", res)
	}
}
