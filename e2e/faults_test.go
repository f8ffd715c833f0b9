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
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
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
	for _, info := range s.consumerInfos() {
		n += int(info.Delivered.Consumer)
	}
	return n
}

// consumerInfos is the state of the worker's consumer of each reading type.
func (s *stack) consumerInfos() []*jetstream.ConsumerInfo {
	s.t.Helper()
	infos := make([]*jetstream.ConsumerInfo, 0, len(models.Types))
	for _, typ := range models.Types {
		c, err := s.js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(typ))
		if err != nil {
			s.t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			s.t.Fatal(err)
		}
		infos = append(infos, info)
	}
	return infos
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

// load posts GPS and gyroscope readings through the stack's API from a few
// goroutines until stopped, recording every 202. Anything but 202 or a 503
// (the only truthful refusal while a dependency is down) fails the test.
func (s *stack) load(a *accepted, goroutines int, pause time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i += goroutines {
				select {
				case <-done:
					return
				case <-time.After(pause):
				}
				path, typ, body := "/telemetry/gps", models.TypeGPS, gpsBody(fmt.Sprintf("load-%d", g), i)
				if i%2 == 1 {
					path, typ = "/telemetry/gyroscope", models.TypeGyroscope
					body = map[string]any{"device_id": fmt.Sprintf("load-%d", g), "timestamp": 1764324000 + i, "x": i, "y": -i, "z": 0.5}
				}
				switch status, out := s.post(path, body, nil); status {
				case http.StatusAccepted:
					a.add(out["id"].(string), typ)
				case http.StatusServiceUnavailable:
				default:
					s.t.Errorf("POST %s: %d %v", path, status, out)
					return
				}
			}
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	s.t.Cleanup(stop)
	return stop
}

// ackPending is how many delivered messages the worker's consumers wait
// for an ack of: a batch in flight.
func (s *stack) ackPending() int {
	s.t.Helper()
	n := 0
	for _, info := range s.consumerInfos() {
		n += info.NumAckPending
	}
	return n
}

// The real worker binary is killed with SIGKILL while it holds a batch
// (delivered, not acknowledged), three times, and restarted each time,
// while readings keep arriving through the API. The batch a kill
// interrupts was never committed or was committed without its ack: either
// way it is redelivered after AckWait, and every reading is stored once.
func TestWorkerSIGKILLMidBatchStoresEachOnce(t *testing.T) {
	const ackWait = 2 * time.Second
	bin := buildCommand(t, "worker")
	s := newStack(t, map[string]string{"CONSUMER_ACK_WAIT": ackWait.String(), "RECOGNITION_TIMEOUT": "900ms",
		"REKOGNITION_COLLECTION_ID": ""})
	var a accepted
	stop := s.load(&a, 4, 3*time.Millisecond)
	stored := func() int { return s.count(`SELECT count(*) FROM gps`) + s.count(`SELECT count(*) FROM gyroscope`) }

	const kills = 3
	var held []int
	var lastKill time.Time
	for k := range kills {
		w := s.startProcess(bin, nil)
		base := stored()
		s.eventually("the worker storing", func() (bool, string) {
			n := stored()
			return n >= base+50, fmt.Sprintf("%d stored, want %d", n, base+50)
		})
		pending := 0
		s.eventually("a batch in flight", func() (bool, string) {
			pending = s.ackPending()
			return pending > 0, "no message awaiting an ack"
		})
		w.signal(t, syscall.SIGKILL, 5*time.Second)
		lastKill = time.Now()
		after := s.ackPending()
		t.Logf("kill %d: %d messages awaiting an ack just before, %d just after", k+1, pending, after)
		held = append(held, after)
	}
	s.startProcess(bin, nil)
	time.Sleep(ackWait) // load on through the last restart's redeliveries
	stop()
	if t.Failed() {
		t.FailNow()
	}
	r := s.storedExactlyOnce(&a, lastKill)
	// A message held at one kill can still be held (waiting out AckWait) at
	// the next: the figures per kill overlap; redelivered does not.
	r.log(t, fmt.Sprintf("worker SIGKILLed %d times (messages held at each kill %v, AckWait %s)", kills, held, ackWait))
	if r.redelivered == 0 {
		t.Error("nothing was redelivered: no kill interrupted a batch")
	}
}

// outcome is how one request of the SIGTERM test ended.
type outcome struct {
	status int // 0: a transport error
	id     string
	took   time.Duration
}

// The real api binary gets SIGTERM while eight clients post readings: it
// stops accepting, finishes what is in flight and exits within its
// shutdown budget. Every request ends in time with a truthful answer:
// 202 (and the reading is stored, once), 503, or a connection error
// (refused once the listener is closed); a reading answered anything but
// 202 may still be stored only if the answer was an error a client
// retries with its Idempotency-Key, and then once.
func TestAPISIGTERMUnderLoadAnswersTruthfully(t *testing.T) {
	const budget = 5 * time.Second
	bin := buildCommand(t, "api")
	s := newStack(t, map[string]string{"SHUTDOWN_TIMEOUT": budget.String()})
	s.startWorker()
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := s.startProcess(bin, map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", port), "ADMIN_ADDR": "127.0.0.1:0"})

	client := &http.Client{Timeout: 3 * budget}
	post := func(device string, i int) outcome {
		b, _ := json.Marshal(gpsBody(device, i))
		req, _ := http.NewRequest(http.MethodPost, base+"/telemetry/gps", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", apiSecret)
		began := time.Now()
		resp, err := client.Do(req)
		o := outcome{took: time.Since(began)}
		if err != nil {
			return o
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		o.status = resp.StatusCode
		o.id, _ = out["id"].(string)
		return o
	}
	var a accepted
	s.eventually("the api binary accepting", func() (bool, string) {
		o := post("probe", 0)
		if o.status == http.StatusAccepted {
			a.add(o.id, models.TypeGPS)
		}
		return o.status == http.StatusAccepted, fmt.Sprint(o.status)
	})

	const clients = 8
	var mu sync.Mutex
	outcomes := map[int]outcome{}
	var okBefore int
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ; i += clients {
				o := post("sigterm", i)
				mu.Lock()
				outcomes[i] = o
				if o.status == http.StatusAccepted {
					okBefore++
				}
				mu.Unlock()
				select {
				case <-p.exited:
					return // this request ran after the exit: refused
				default:
				}
			}
		}()
	}
	s.eventually("load flowing", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return okBefore >= 200, fmt.Sprintf("%d accepted", okBefore)
	})
	sigterm := time.Now()
	exit := p.signal(t, syscall.SIGTERM, budget+5*time.Second)
	wg.Wait()
	if p.err != nil {
		t.Errorf("the api exited with %v after SIGTERM, want 0", p.err)
	}

	counts := map[string]int{}
	var slowest time.Duration
	for i, o := range outcomes {
		slowest = max(slowest, o.took)
		switch o.status {
		case http.StatusAccepted:
			counts["202"]++
			a.add(o.id, models.TypeGPS)
		case http.StatusServiceUnavailable:
			counts["503"]++
		case 0:
			counts["connection error"]++
		default:
			t.Errorf("request %d answered %d during the shutdown", i, o.status)
		}
		if o.took > budget+time.Second {
			t.Errorf("request %d took %s, past the %s shutdown budget", i, o.took, budget)
		}
	}
	// A reading stored without a 202 (its answer lost to the shutdown) is
	// allowed only if its request ended in an error; it joins the set, so
	// it too must be stored once.
	s.eventually("every 202 stored", func() (bool, string) {
		n := s.count(`SELECT count(*) FROM gps WHERE device_id = 'sigterm'`)
		return n >= counts["202"], fmt.Sprintf("%d stored, %d answered 202", n, counts["202"])
	})
	rows, err := s.db.Query(context.Background(), `SELECT message_id::text, extract(epoch FROM recorded_at)::bigint - 1764324000
		FROM gps WHERE device_id = 'sigterm'`)
	if err != nil {
		t.Fatal(err)
	}
	unanswered := 0
	for rows.Next() {
		var id string
		var i int
		if err := rows.Scan(&id, &i); err != nil {
			t.Fatal(err)
		}
		if o := outcomes[i]; o.status != http.StatusAccepted {
			if o.status != 0 {
				t.Errorf("reading %d is stored but was answered %d", i, o.status)
			}
			unanswered++
			a.add(id, models.TypeGPS)
		}
	}
	rows.Close()
	r := s.storedExactlyOnce(&a, sigterm)
	r.log(t, fmt.Sprintf("api SIGTERMed under load (exit after %s, budget %s; answers %v; slowest request %s; stored without a 202: %d)",
		exit.Round(time.Millisecond), budget, counts, slowest.Round(time.Millisecond), unanswered))
}
