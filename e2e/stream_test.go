package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
)

// streamEvent is one event of GET /telemetry/stream.
type streamEvent struct{ event, id, data string }

// openStream connects to the live stream with the front-end's read key and
// returns its events (comments dropped) and a way to hang up.
func (s *readStack) openStream(query string, headers ...string) (<-chan streamEvent, context.CancelFunc) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.apiURL+"/telemetry/stream"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("X-API-Key", readSecret)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		s.t.Fatalf("GET /telemetry/stream%s = %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The answer comes once the stream is subscribed: from here on, every
	// reading stored reaches it.
	events := make(chan streamEvent, 1000)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev streamEvent
		for sc.Scan() {
			field, value, _ := strings.Cut(sc.Text(), ":")
			value = strings.TrimPrefix(value, " ")
			switch {
			case sc.Text() == "":
				if ev.event != "" {
					events <- ev
				}
				ev = streamEvent{}
			case field == "event":
				ev.event = value
			case field == "id":
				ev.id = value
			case field == "data":
				ev.data += value
			}
		}
	}()
	return events, cancel
}

func nextStreamEvent(t *testing.T, events <-chan streamEvent, within time.Duration) streamEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event on the stream within %s", within)
		return streamEvent{}
	}
}

// A reading posted while a client watches the stream reaches it within a
// second of its 202, through NATS, the worker, PostgreSQL and the worker's
// announcement, with the item the list routes serve. A client that comes
// back with Last-Event-ID first gets what was stored while it was away,
// then live readings, each once.
func TestStreamShowsEachStoredReading(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	events, hangUp := s.openStream("?types=gps&device_id=truck-7")

	s.accept("/telemetry/gyroscope", map[string]any{"device_id": "truck-7", "timestamp": time.Now().Unix(), "x": 1, "y": 2, "z": 3})
	s.accept("/telemetry/gps", map[string]any{"device_id": "truck-8", "timestamp": time.Now().Unix(), "latitude": 1, "longitude": 2})
	id := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-7", "timestamp": time.Now().Unix(), "latitude": -23.55052, "longitude": -46.633308})
	accepted := time.Now()
	ev := nextStreamEvent(t, events, time.Second)
	t.Logf("202 to stream event: %s", time.Since(accepted))
	if ev.event != "gps" || ev.id != id {
		t.Fatalf("event %s %s, want gps %s (the filters let through another reading?)", ev.event, ev.id, id)
	}
	var item models.GPSItem
	if err := json.Unmarshal([]byte(ev.data), &item); err != nil {
		t.Fatalf("data %s: %v", ev.data, err)
	}
	if stored := waitStored[models.GPSItem](s, "gps", id); item != stored {
		t.Errorf("stream item %+v, GET /telemetry/gps/%s %+v", item, id, stored)
	}
	if item.DeviceID != "truck-7" || item.Latitude != -23.55052 || item.Longitude != -46.633308 {
		t.Errorf("item %+v", item)
	}

	// Away while two more are stored.
	hangUp()
	var missed []string
	for i := 0; i < 2; i++ {
		missed = append(missed, s.accept("/telemetry/gps", map[string]any{"device_id": "truck-7", "timestamp": time.Now().Unix(), "latitude": i, "longitude": 2}))
	}
	for _, m := range missed {
		waitStored[models.GPSItem](s, "gps", m)
	}
	events, _ = s.openStream("?types=gps&device_id=truck-7", "Last-Event-ID", id)
	for _, want := range missed {
		if ev := nextStreamEvent(t, events, time.Second); ev.id != want {
			t.Fatalf("replayed %s, want %s", ev.id, want)
		}
	}
	live := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-7", "timestamp": time.Now().Unix(), "latitude": 3, "longitude": 2})
	if ev := nextStreamEvent(t, events, time.Second); ev.id != live {
		t.Fatalf("live after the replay %s, want %s", ev.id, live)
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %s %s (a repeat?)", ev.event, ev.id)
	case <-time.After(300 * time.Millisecond):
	}
}
