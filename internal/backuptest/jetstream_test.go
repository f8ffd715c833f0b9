package backuptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

const backlog = 50 // unconsumed GPS messages in TELEMETRY at backup time

// TestJetStreamSnapshotRestoresIntoAFreshServer: the TELEMETRY stream,
// holding messages no worker has consumed, is snapshot through the
// JetStream API ($JS.API.STREAM.SNAPSHOT, what `nats stream backup` calls)
// and restored ($JS.API.STREAM.RESTORE, `nats stream restore`) into a
// server with an empty store; the messages and the consumers are there.
func TestJetStreamSnapshotRestoresIntoAFreshServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := testenv.NATS(t)
	nc, js := testenv.JetStream(t, src.URL)
	first := fillTelemetry(ctx, t, js)

	snap, cfg, state := snapshot(t, nc, messaging.StreamName)

	dst := testenv.NATS(t)
	dnc, djs := testenv.JetStream(t, dst.URL)
	restore(t, dnc, messaging.StreamName, snap, cfg, state)
	checkBacklog(ctx, t, djs, first)
}

// TestJetStreamStoreCopyRestoresIntoAFreshServer: the offline procedure
// (the compose deployment's volume copy): stop the server, copy its store
// directory, start a new server on the copy.
func TestJetStreamStoreCopyRestoresIntoAFreshServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srcDir := t.TempDir()
	src := testenv.NATSWith(t, func(o *server.Options) { o.StoreDir = srcDir })
	_, js := testenv.JetStream(t, src.URL)
	first := fillTelemetry(ctx, t, js)
	src.Stop()

	copyDir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(copyDir, os.DirFS(srcDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(srcDir); err != nil { // the old server's store is gone for good
		t.Fatal(err)
	}
	dst := testenv.NATSWith(t, func(o *server.Options) { o.StoreDir = copyDir })
	_, djs := testenv.JetStream(t, dst.URL)
	checkBacklog(ctx, t, djs, first)
}

// fillTelemetry creates the topology the binaries create and publishes
// backlog GPS messages as the API does; it returns the first one's body.
func fillTelemetry(ctx context.Context, t *testing.T, js jetstream.JetStream) []byte {
	t.Helper()
	if err := messaging.EnsureTopology(ctx, js, messaging.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	pub, err := messaging.NewPublisher(ctx, js, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	for i := range backlog {
		body := []byte(`{"message_id":"m-` + strconv.Itoa(i) + `","device_id":"truck-1","latitude":-23.5,"longitude":-46.6}`)
		if i == 0 {
			first = body
		}
		if err := pub.Publish(ctx, models.TypeGPS.Subject(), "m-"+strconv.Itoa(i), body); err != nil {
			t.Fatal(err)
		}
	}
	return first
}

// checkBacklog: TELEMETRY holds the backlog, the GPS consumer survived
// with all of it pending, and a worker's fetch reads it in order, each
// message with its Nats-Msg-Id (the message_id the database keeps unique).
func checkBacklog(ctx context.Context, t *testing.T, js jetstream.JetStream, first []byte) {
	t.Helper()
	s, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatalf("restored server: %v", err)
	}
	if n := s.CachedInfo().State.Msgs; n != backlog {
		t.Errorf("restored TELEMETRY holds %d messages, want %d", n, backlog)
	}
	c, err := s.Consumer(ctx, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatalf("restored consumer: %v", err)
	}
	if p := c.CachedInfo().NumPending; p != backlog {
		t.Errorf("restored consumer has %d pending, want %d", p, backlog)
	}
	batch, err := c.Fetch(backlog, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for m := range batch.Messages() {
		if i == 0 && string(m.Data()) != string(first) {
			t.Errorf("first restored message = %s, want %s", m.Data(), first)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != "m-"+strconv.Itoa(i) {
			t.Errorf("message %d has Nats-Msg-Id %q", i, id)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
		i++
	}
	if batch.Error() != nil {
		t.Fatal(batch.Error())
	}
	if i != backlog {
		t.Errorf("the worker's consumer read %d restored messages, want %d", i, backlog)
	}
}

// snapshot asks the server for a snapshot of stream (with its consumers)
// and collects its chunks, acknowledging each (the server's flow control);
// an empty message ends it.
func snapshot(t *testing.T, nc *nats.Conn, stream string) (data []byte, cfg *server.StreamConfig, state *server.StreamState) {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var resp server.JSApiStreamSnapshotResponse
	apiRequest(t, nc, fmt.Sprintf(server.JSApiStreamSnapshotT, stream),
		server.JSApiStreamSnapshotRequest{DeliverSubject: inbox, CheckMsgs: true}, &resp)
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("snapshot of %s: %v after %d bytes", stream, err, len(data))
		}
		if len(m.Data) == 0 {
			break
		}
		data = append(data, m.Data...)
		if err := m.Respond(nil); err != nil {
			t.Fatal(err)
		}
	}
	return data, resp.Config, resp.State
}

// restore sends a snapshot to the server in chunks, each request answered
// by the server, and an empty message to finish; the server then answers
// with the restored stream.
func restore(t *testing.T, nc *nats.Conn, stream string, data []byte, cfg *server.StreamConfig, state *server.StreamState) {
	t.Helper()
	var resp server.JSApiStreamRestoreResponse
	apiRequest(t, nc, fmt.Sprintf(server.JSApiStreamRestoreT, stream),
		server.JSApiStreamRestoreRequest{Config: *cfg, State: *state}, &resp)
	const chunk = 64 << 10
	for off := 0; off < len(data); off += chunk {
		if _, err := nc.Request(resp.DeliverSubject, data[off:min(off+chunk, len(data))], 5*time.Second); err != nil {
			t.Fatalf("restore chunk at %d: %v", off, err)
		}
	}
	m, err := nc.Request(resp.DeliverSubject, nil, 30*time.Second)
	if err != nil {
		t.Fatalf("restore of %s: %v", stream, err)
	}
	var done server.JSApiStreamCreateResponse
	if err := json.Unmarshal(m.Data, &done); err != nil {
		t.Fatal(err)
	}
	if done.Error != nil {
		t.Fatalf("restore of %s: %v", stream, done.Error)
	}
}

func apiRequest(t *testing.T, nc *nats.Conn, subject string, req, resp any) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(subject, b, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		t.Fatalf("%s: %v: %s", subject, err, m.Data)
	}
	var api server.ApiResponse
	_ = json.Unmarshal(m.Data, &api)
	if api.Error != nil {
		t.Fatalf("%s: %v", subject, api.Error)
	}
}
