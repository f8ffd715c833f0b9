package handlers

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// replayDB is a migrated database with the worker's store (to insert
// readings) and the read API's reader (to replay them).
type replayDB struct {
	t     *testing.T
	store *storage.Store
	rd    *storage.Reader
}

func newReplayDB(t *testing.T) *replayDB {
	t.Helper()
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
	rd, err := storage.OpenReader(ctx, dsn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	return &replayDB{t: t, store: st, rd: rd}
}

// storeGPS stores a fix as the worker does and returns its item.
func (db *replayDB) storeGPS(device string) models.GPSItem {
	db.t.Helper()
	now := time.Now().UTC()
	items, err := db.store.InsertGPS(context.Background(), []models.GPS{{
		Meta: models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: now, DeviceID: device,
			RecordedAt: now.Add(-time.Second)},
		Latitude: -23.5, Longitude: -46.6,
	}})
	if err != nil || len(items) != 1 {
		db.t.Fatalf("insert: %v %v", items, err)
	}
	return items[0]
}

// announceItem publishes a stored item to the hub as the worker announces it.
func (s *streamServer) announceItem(it models.GPSItem) {
	s.t.Helper()
	b, err := json.Marshal(it)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.hub.Publish(models.TypeGPS, it.ID, b); err != nil {
		s.t.Fatal(err)
	}
}

// hookedReplay runs before() just before each replay query, while the
// client is already subscribed to live events.
type hookedReplay struct {
	storedReplayer
	before func()
}

func (h hookedReplay) StoredAfter(ctx context.Context, lastID uuid.UUID, types []models.Type, deviceID string, limit int) ([]storage.Event, bool, error) {
	h.before()
	return h.storedReplayer.StoredAfter(ctx, lastID, types, deviceID, limit)
}

// A client that reconnects with Last-Event-ID gets what was stored while it
// was away, then the live events, each once: an announcement that arrives
// while the replay reads the same row is not repeated.
func TestLiveStreamReplaysWhatWasMissedThenGoesLive(t *testing.T) {
	db := newReplayDB(t)
	var hook func()
	s := newStreamServer(t, streamOptions{replay: hookedReplay{db.rd, func() { hook() }}})

	c := openStream(t, s.srv.URL, "?types=gps")
	s.waitClients(1)
	a := db.storeGPS("truck-1")
	s.announceItem(a)
	if ev := c.nextEvent(time.Second); ev.id != a.ID.String() {
		t.Fatalf("live event %s, want %s", ev.id, a.ID)
	}
	c.close()
	s.waitClients(0)

	// Stored while nobody listened (announced to no one).
	b, cc := db.storeGPS("truck-1"), db.storeGPS("truck-2")
	s.announceItem(b)
	s.announceItem(cc)
	stored := make(chan models.GPSItem, 1)
	hook = func() {
		// Stored and announced just as the reconnected client's replay
		// starts: in the replay and in its live queue.
		d := db.storeGPS("truck-1")
		s.announceItem(d)
		stored <- d
	}
	re := openStream(t, s.srv.URL, "?types=gps", "Last-Event-ID", a.ID.String())
	d := <-stored
	for _, it := range []models.GPSItem{b, cc, d} {
		ev := re.nextEvent(time.Second)
		wantData, _ := json.Marshal(it)
		if ev.event != "gps" || ev.id != it.ID.String() || ev.data != string(wantData) {
			t.Fatalf("replayed %+v, want %s %s", ev, it.ID, wantData)
		}
	}
	re.comment("events replayed: 3", time.Second)
	e := db.storeGPS("truck-1")
	s.announceItem(e)
	if ev := re.nextEvent(time.Second); ev.id != e.ID.String() {
		t.Fatalf("live after replay: %s, want %s (a repeat of the replay?)", ev.id, e.ID)
	}
	re.noEvent(200 * time.Millisecond)

	// The parameter (for EventSource polyfills) works as the header, and
	// the header, which a browser updates on each reconnect, wins.
	hook = func() {}
	for _, tc := range []struct {
		query   string
		headers []string
	}{
		{"?last_event_id=" + cc.ID.String(), nil},
		{"?last_event_id=" + a.ID.String(), []string{"Last-Event-ID", cc.ID.String()}},
	} {
		c := openStream(t, s.srv.URL, tc.query, tc.headers...)
		// a and b may repeat: the replay starts storage.ReplayGrace before
		// the last id, for transactions that committed late.
		got := strings.Join(c.replayed(a.ID, b.ID), ",")
		if want := d.ID.String() + "," + e.ID.String(); got != want {
			t.Fatalf("%s %v: replayed %s, want %s", tc.query, tc.headers, got, want)
		}
		c.close()
	}

	// Filters apply to the replay.
	c = openStream(t, s.srv.URL, "?device_id=truck-2", "Last-Event-ID", a.ID.String())
	if ev := c.nextEvent(time.Second); ev.id != cc.ID.String() {
		t.Fatalf("filtered replay %s, want %s", ev.id, cc.ID)
	}
	c.comment("events replayed: 1", time.Second)
}

// replayed reads a replay to its end and returns the ids, without those in
// skip.
func (c *sseClient) replayed(skip ...uuid.UUID) []string {
	c.t.Helper()
	var ids []string
	for {
		r, ok := c.next(2 * time.Second)
		if !ok {
			c.t.Fatal("the replay did not end")
		}
		if len(r.comments) > 0 && strings.Contains(r.comments[0], "events replayed") {
			return ids
		}
		if r.event != "" && !slices.Contains(skip, uuid.MustParse(r.id)) {
			ids = append(ids, r.id)
		}
	}
}

func TestLiveStreamUnknownLastEventIDStartsLive(t *testing.T) {
	db := newReplayDB(t)
	s := newStreamServer(t, streamOptions{replay: db.rd})
	unknown := uuid.Must(uuid.NewV7())
	c := openStream(t, s.srv.URL, "", "Last-Event-ID", unknown.String())
	c.comment("last event id "+unknown.String()+" not found", time.Second)
	it := db.storeGPS("truck-1")
	s.announceItem(it)
	if ev := c.nextEvent(time.Second); ev.id != it.ID.String() {
		t.Fatalf("live event %s, want %s", ev.id, it.ID)
	}
}

// With the database down the replay is skipped, and said so; live events
// still flow.
func TestLiveStreamWithoutDatabaseStillStreamsLive(t *testing.T) {
	rd, err := storage.OpenReader(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	s := newStreamServer(t, streamOptions{replay: rd})
	c := openStream(t, s.srv.URL, "", "Last-Event-ID", uuid.Must(uuid.NewV7()).String())
	c.comment("replay unavailable", 3*time.Second)
	id, _ := s.announce(models.TypePhoto, "truck-1")
	if ev := c.nextEvent(time.Second); ev.id != id.String() {
		t.Fatalf("live event %s, want %s", ev.id, id)
	}
	if !strings.Contains(s.logs.String(), "stream replay skipped") {
		t.Errorf("the skipped replay is not logged:\n%s", s.logs)
	}
}

// A replay longer than the cap stops there and the client resumes from
// the last id it got, until it has everything: nothing is missed.
func TestLiveStreamLongReplayResumesInChunks(t *testing.T) {
	db := newReplayDB(t)
	s := newStreamServer(t, streamOptions{replay: db.rd, replayLimit: 3})
	first := db.storeGPS("truck-1")
	var want []string
	for i := 0; i < 7; i++ {
		want = append(want, db.storeGPS("truck-1").ID.String())
	}
	// Spread them over time as a long absence would (3 s apart, beyond
	// storage.ReplayGrace), so each resumed replay starts further on.
	if _, err := db.store.Pool().Exec(context.Background(),
		`UPDATE gps SET created_at = now() - interval '1 hour' + id * interval '3 seconds'`); err != nil {
		t.Fatal(err)
	}

	last := first.ID.String()
	seen := map[string]bool{}
	var got []string
	for round := 0; round < 10 && len(seen) < len(want); round++ {
		c := openStream(t, s.srv.URL, "", "Last-Event-ID", last)
		for {
			r, ok := c.next(2 * time.Second)
			if !ok {
				t.Fatal("the stream neither sent nor ended")
			}
			if r.event != "" {
				last = r.id
				if !seen[r.id] {
					seen[r.id] = true
					got = append(got, r.id)
				}
				continue
			}
			if len(r.comments) > 0 && strings.Contains(r.comments[0], "replay stopped after 3 events") {
				if !c.ended(time.Second) {
					t.Fatal("a capped replay must end the stream")
				}
				break
			}
			if len(r.comments) > 0 && strings.Contains(r.comments[0], "events replayed") {
				c.close()
				break
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("resumed replays gave %v, want %v", got, want)
	}
}

// When more readings than the cap were stored within storage.ReplayGrace, a
// resumed replay could not get past them: the stream carries on live and
// says what it skipped.
func TestLiveStreamDenseReplayIsCappedAndGoesLive(t *testing.T) {
	db := newReplayDB(t)
	s := newStreamServer(t, streamOptions{replay: db.rd, replayLimit: 3})
	first := db.storeGPS("truck-1")
	for i := 0; i < 5; i++ {
		db.storeGPS("truck-1")
	}
	c := openStream(t, s.srv.URL, "", "Last-Event-ID", first.ID.String())
	for i := 0; i < 3; i++ {
		c.nextEvent(time.Second)
	}
	c.comment("replay capped at 3 events", time.Second)
	it := db.storeGPS("truck-1")
	s.announceItem(it)
	if ev := c.nextEvent(time.Second); ev.id != it.ID.String() {
		t.Fatalf("live event %s, want %s", ev.id, it.ID)
	}
}
