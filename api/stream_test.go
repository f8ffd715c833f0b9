package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

const readSecret = "api-read-secret-0123456789"

// streamSetup is an API with the read API on (a migrated database) and a
// NATS connection that announces readings as the worker does.
type streamSetup struct {
	*running
	nc    *nats.Conn
	store *storage.Store
}

func startWithStream(t *testing.T, mutate func(*config.API)) *streamSetup {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := storage.Migrate(ctx, st.Pool()); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(ns.URL)
	cfg.APIKeys = append(cfg.APIKeys, config.NewAPIKey("front", readSecret, config.ScopeRead))
	cfg.Read = config.Read{DatabaseURL: dsn, StatementTimeout: 5 * time.Second, PoolMaxConns: 4}
	if mutate != nil {
		mutate(&cfg)
	}
	nc, _ := testenv.JetStream(t, ns.URL)
	return &streamSetup{running: start(t, cfg), nc: nc, store: st}
}

// storeAndAnnounce stores a GPS fix and announces it as the worker does
// once its transaction has committed.
func (s *streamSetup) storeAndAnnounce(t *testing.T, device string) models.GPSItem {
	t.Helper()
	now := time.Now().UTC()
	items, err := s.store.InsertGPS(context.Background(), []models.GPS{{
		Meta:     models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: now, DeviceID: device, RecordedAt: now},
		Latitude: 1, Longitude: 2,
	}})
	if err != nil || len(items) != 1 {
		t.Fatalf("insert: %v %v", items, err)
	}
	s.announce(t, models.TypeGPS.StoredSubject(), items[0].ID.String(), items[0])
	return items[0]
}

func (s *streamSetup) announce(t *testing.T, subject, id string, item any) {
	t.Helper()
	data, err := json.Marshal(item)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	if id != "" {
		msg.Header.Set(models.StoredReadingIDHeader, id)
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

// sseEvent is an event of the stream, or "" fields for a comment block.
type sseEvent struct{ event, id, data, comment string }

// openStream connects and reads blocks in the background.
func openStream(t *testing.T, addr, query string, headers ...string) (<-chan sseEvent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/telemetry/stream"+query, nil)
	req.Header.Set("X-API-Key", readSecret)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := openapitest.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	out := make(chan sseEvent, 1000)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			field, value, _ := strings.Cut(sc.Text(), ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				if sc.Text() == "" {
					out <- ev
					ev = sseEvent{}
				} else {
					ev.comment += value
				}
			case "event":
				ev.event = value
			case "id":
				ev.id = value
			case "data":
				ev.data += value
			}
		}
	}()
	return out, cancel
}

// nextEvent skips comments and returns the next event within d.
func nextEvent(t *testing.T, events <-chan sseEvent, d time.Duration) sseEvent {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.event != "" {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event within %s", d)
		}
	}
}

// The API's one NATS subscription feeds every stream: a reading announced
// after a client connected reaches it within a second; an announcement
// that is not one is ignored, and the next one still arrives.
func TestStreamCarriesTheWorkersAnnouncements(t *testing.T) {
	s := startWithStream(t, nil)
	events, _ := openStream(t, s.Addr(), "?types=gps")
	time.Sleep(50 * time.Millisecond) // let the handler subscribe

	s.announce(t, models.TypeGPS.StoredSubject(), "", map[string]string{"device_id": "x"}) // no Reading-Id
	s.announce(t, models.StoredSubjectPrefix+"barometer", uuid.NewString(), map[string]string{"device_id": "x"})
	start := time.Now()
	it := s.storeAndAnnounce(t, "truck-1")
	ev := nextEvent(t, events, time.Second)
	want, _ := json.Marshal(it)
	if ev.event != "gps" || ev.id != it.ID.String() || ev.data != string(want) {
		t.Fatalf("event %+v, want gps %s %s", ev, it.ID, want)
	}
	t.Logf("announced to received: %s", time.Since(start))
}

// A client reconnecting with Last-Event-ID gets, through the API's own
// read pool, what was stored while it was away, then live events.
func TestStreamReplaysFromTheDatabase(t *testing.T) {
	s := startWithStream(t, nil)
	events, cancel := openStream(t, s.Addr(), "")
	time.Sleep(50 * time.Millisecond)
	a := s.storeAndAnnounce(t, "truck-1")
	if ev := nextEvent(t, events, time.Second); ev.id != a.ID.String() {
		t.Fatalf("live %s, want %s", ev.id, a.ID)
	}
	cancel()
	b := s.storeAndAnnounce(t, "truck-1")
	c := s.storeAndAnnounce(t, "truck-1")

	events, _ = openStream(t, s.Addr(), "", "Last-Event-ID", a.ID.String())
	for _, want := range []models.GPSItem{b, c} {
		if ev := nextEvent(t, events, time.Second); ev.id != want.ID.String() {
			t.Fatalf("replayed %s, want %s", ev.id, want.ID)
		}
	}
	d := s.storeAndAnnounce(t, "truck-1")
	if ev := nextEvent(t, events, time.Second); ev.id != d.ID.String() {
		t.Fatalf("live after the replay %s, want %s", ev.id, d.ID)
	}
}

// Graceful shutdown ends the streams (which never end by themselves) at
// once, instead of waiting SHUTDOWN_TIMEOUT for them.
func TestShutdownEndsStreams(t *testing.T) {
	s := startWithStream(t, func(c *config.API) { c.ShutdownTimeout = 10 * time.Second })
	var streams []<-chan sseEvent
	for i := 0; i < 3; i++ {
		events, _ := openStream(t, s.Addr(), "")
		streams = append(streams, events)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	took := time.Since(start)
	t.Logf("shutdown with %d open streams took %s", len(streams), took)
	if took > 5*time.Second {
		t.Errorf("shutdown took %s with open streams: it waited for them", took)
	}
	for _, events := range streams {
		var last sseEvent
		for ev := range events { // ends when the server closes the stream
			last = ev
		}
		if !strings.Contains(last.comment, "shutting down") {
			t.Errorf("last block %+v, want the shutting-down comment", last)
		}
	}
}

func TestStreamNeedsTheReadAPI(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := testConfig(ns.URL)
	cfg.APIKeys = append(cfg.APIKeys, config.NewAPIKey("front", readSecret, config.ScopeRead))
	r := start(t, cfg)
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addr()+"/telemetry/stream", nil)
	req.Header.Set("X-API-Key", readSecret)
	resp, err := openapitest.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without DATABASE_URL: %d, want 404", resp.StatusCode)
	}
}
