package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/worker"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/faces/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type auditRow struct {
	Actor, Action, Resource string
	ResourceID              *string
	Details                 map[string]any
}

// awaitAcks waits for every publish to be acknowledged, 10 s each at most.
func awaitAcks(t *testing.T, acks []jetstream.PubAckFuture) {
	t.Helper()
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("publish not acknowledged")
		}
	}
}

func (e *testEnv) audit(msgID uuid.UUID) []auditRow {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(),
		`SELECT actor, action, resource, resource_id, details FROM audit_log WHERE message_id = $1 ORDER BY id`, msgID)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditRow, error) {
		var a auditRow
		err := r.Scan(&a.Actor, &a.Action, &a.Resource, &a.ResourceID, &a.Details)
		return a, err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func TestStoresEachTypeWithItsAuditRow(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.start(worker.Options{})

	gyro := gyroReading(0.98, -0.45, 0) // zero is a value, not a missing one
	gps := gpsReading(-23.55052, -46.633308)
	img := readFixture(t, "grace_hopper.jpg")
	photo := photoReading(img)
	e.publish(models.TypeGyroscope, gyro)
	e.publish(models.TypeGPS, gps)
	e.publish(models.TypePhoto, photo)

	e.waitFor(10*time.Second, "three rows", func() bool {
		return e.count(`SELECT (SELECT count(*) FROM gyroscope) + (SELECT count(*) FROM gps) + (SELECT count(*) FROM photo)`) == 3
	})
	ctx := context.Background()

	var g struct {
		id                 int64
		device             string
		x, y, z            float64
		recorded, received time.Time
	}
	if err := e.db.QueryRow(ctx, `SELECT id, device_id, x, y, z, recorded_at, received_at FROM gyroscope WHERE message_id = $1`,
		gyro.MessageID).Scan(&g.id, &g.device, &g.x, &g.y, &g.z, &g.recorded, &g.received); err != nil {
		t.Fatal(err)
	}
	if g.device != gyro.DeviceID || g.x != 0.98 || g.y != -0.45 || g.z != 0 ||
		!g.recorded.Equal(gyro.RecordedAt) || !g.received.Equal(gyro.ReceivedAt) {
		t.Fatalf("gyroscope row %+v, want %+v", g, gyro)
	}
	var p struct {
		id       int64
		device   string
		lat, lon float64
		recorded time.Time
	}
	if err := e.db.QueryRow(ctx, `SELECT id, device_id, latitude, longitude, recorded_at FROM gps WHERE message_id = $1`,
		gps.MessageID).Scan(&p.id, &p.device, &p.lat, &p.lon, &p.recorded); err != nil {
		t.Fatal(err)
	}
	if p.device != gps.DeviceID || p.lat != -23.55052 || p.lon != -46.633308 || !p.recorded.Equal(gps.RecordedAt) {
		t.Fatalf("gps row %+v, want %+v", p, gps)
	}
	row := e.photoRow(photo.MessageID)
	if row.DeviceID != photo.DeviceID || row.ContentType != "image/jpeg" || row.SizeBytes != len(img) ||
		row.RecognitionStatus != "disabled" || row.Recognized || row.FaceID != "" || row.Similarity != nil ||
		row.KeyID != "k1" || !row.RecordedAt.Equal(photo.RecordedAt) {
		t.Fatalf("photo row %+v", row)
	}

	for _, c := range []struct {
		id               uuid.UUID
		action, resource string
		rowID            int64
	}{
		{gyro.MessageID, "gyroscope.stored", "gyroscope", g.id},
		{gps.MessageID, "gps.stored", "gps", p.id},
		{photo.MessageID, "photo.stored", "photo", row.ID},
	} {
		rows := e.audit(c.id)
		if len(rows) != 1 {
			t.Fatalf("%s: %d audit rows, want 1", c.resource, len(rows))
		}
		a := rows[0]
		if a.Actor != "fleet-app" || a.Action != c.action || a.Resource != c.resource ||
			a.ResourceID == nil || *a.ResourceID != fmt.Sprint(c.rowID) || a.Details["device_id"] == nil {
			t.Fatalf("%s audit row %+v", c.resource, a)
		}
	}
	photoAudit := e.audit(photo.MessageID)[0].Details
	if photoAudit["recognition_status"] != "disabled" || photoAudit["encryption_key_id"] != "k1" {
		t.Fatalf("photo audit details %v", photoAudit)
	}
	if b, _ := json.Marshal(photoAudit); len(b) > 512 {
		t.Fatalf("photo audit details are %d bytes: image data in the audit log?", len(b))
	}
	if n := e.orphans(); n != 0 {
		t.Fatalf("%d orphan rows", n)
	}
	e.waitFor(5*time.Second, "queues drained", func() bool {
		return e.drained(models.TypeGPS) && e.drained(models.TypeGyroscope) && e.drained(models.TypePhoto)
	})
	if !strings.Contains(e.logs.String(), "face recognition disabled") {
		t.Error("start-up did not log that face recognition is disabled")
	}
}

func TestPhotoIsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	stop := e.start(worker.Options{})
	img := readFixture(t, "grace_hopper.jpg")
	first := photoReading(img)
	e.publish(models.TypePhoto, first)
	e.waitFor(10*time.Second, "first photo", func() bool { return e.count(`SELECT count(*) FROM photo`) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	row := e.photoRow(first.MessageID)
	if bytes.Equal(row.Ciphertext, img) || bytes.Contains(row.Ciphertext, img[:64]) {
		t.Fatal("the stored bytes contain the plaintext image")
	}
	if n := e.count(`SELECT count(*) FROM photo WHERE position(substring($1::bytea from 1 for 64) in image_ciphertext) > 0`, img); n != 0 {
		t.Fatal("the plaintext is findable in the database")
	}
	k1 := e.cfg.EncryptionKeys[0]
	aad := first.MessageID[:]
	got, err := e.sealer().Open(row.KeyID, row.Ciphertext, aad)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("decrypt with the right key and message id: %v", err)
	}
	other, _ := crypto.GenerateKey("k1")
	if _, err := e.sealer(other).Open(row.KeyID, row.Ciphertext, aad); err == nil {
		t.Fatal("a wrong key decrypted the photo")
	}
	another := uuid.Must(uuid.NewV7())
	if _, err := e.sealer().Open(row.KeyID, row.Ciphertext, another[:]); err == nil {
		t.Fatal("the photo decrypted under another message id")
	}

	// Rotation: k2 becomes active, k1 stays to open the rows it sealed.
	k2, _ := crypto.GenerateKey("k2")
	e.cfg.EncryptionKeys = []crypto.Key{k2, k1}
	e.start(worker.Options{})
	second := photoReading(img)
	e.publish(models.TypePhoto, second)
	e.waitFor(10*time.Second, "second photo", func() bool { return e.count(`SELECT count(*) FROM photo`) == 2 })
	rotated := e.sealer(k2, k1)
	for _, c := range []struct {
		id    uuid.UUID
		keyID string
	}{{first.MessageID, "k1"}, {second.MessageID, "k2"}} {
		row := e.photoRow(c.id)
		if row.KeyID != c.keyID {
			t.Fatalf("photo %s sealed with %q, want %q", c.id, row.KeyID, c.keyID)
		}
		if got, err := rotated.Open(row.KeyID, row.Ciphertext, c.id[:]); err != nil || !bytes.Equal(got, img) {
			t.Fatalf("photo sealed with %s after rotation: %v", c.keyID, err)
		}
	}
	if _, err := e.sealer(k1).Open("k2", e.photoRow(second.MessageID).Ciphertext, second.MessageID[:]); err == nil {
		t.Fatal("a sealer without k2 opened a k2 row")
	}
}

func TestBacklogIsStoredExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	// The worker is stopped while 1,000 readings are accepted.
	const n = 1000
	ctx := context.Background()
	var acks []jetstream.PubAckFuture
	for i := range n {
		var v any
		var typ models.Type
		if i%2 == 0 {
			v, typ = gpsReading(float64(i%180)-89.5, float64(i%360)-179.5), models.TypeGPS
		} else {
			v, typ = gyroReading(float64(i), -float64(i), 0.5), models.TypeGyroscope
		}
		data, _ := models.Marshal(v)
		f, err := e.js.PublishAsync(typ.Subject(), data, jetstream.WithMsgID(messageID(v).String()))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	awaitAcks(t, acks)
	if got := e.streamMsgs(); got != n {
		t.Fatalf("stream holds %d messages, want %d", got, n)
	}
	_ = ctx

	start := time.Now()
	e.start(worker.Options{})
	e.waitFor(30*time.Second, "1,000 rows", func() bool {
		return e.count(`SELECT (SELECT count(*) FROM gps) + (SELECT count(*) FROM gyroscope)`) == n
	})
	t.Logf("1,000 readings stored in %s", time.Since(start).Round(time.Millisecond))
	e.waitFor(5*time.Second, "queues drained", func() bool {
		return e.drained(models.TypeGPS) && e.drained(models.TypeGyroscope)
	})
	if got := e.count(`SELECT count(*) FROM gps`); got != n/2 {
		t.Fatalf("gps rows = %d", got)
	}
	if got := e.count(`SELECT count(DISTINCT message_id) FROM audit_log WHERE action IN ('gps.stored', 'gyroscope.stored')`); got != n {
		t.Fatalf("audit rows = %d, want %d", got, n)
	}
	if got := e.count(`SELECT count(*) FROM audit_log`); got != n {
		t.Fatalf("audit rows = %d, want %d", got, n)
	}
	if o := e.orphans(); o != 0 {
		t.Fatalf("%d orphan rows", o)
	}
	e.waitFor(2*time.Second, "acked messages removed from the stream", func() bool { return e.streamMsgs() == 0 })
	if b := e.metric(`worker_batch_size_count{type="gps"}`); b >= n/2 {
		t.Fatalf("gps readings were written in %v batches: not batched", b)
	}
}

func TestSameMessageTwiceIsStoredOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.start(worker.Options{})
	gps := gpsReading(10, 20)
	photo := photoReading(readFixture(t, "grace_hopper.jpg"))
	// The same message id published under different Nats-Msg-Id values gets
	// past JetStream's dedupe: only the database can catch it.
	for i := range 3 {
		for _, m := range []struct {
			t models.Type
			v any
		}{{models.TypeGPS, gps}, {models.TypePhoto, photo}} {
			data, _ := models.Marshal(m.v)
			e.publishRaw(m.t.Subject(), fmt.Sprintf("%s-%d", messageID(m.v), i), data)
		}
	}
	e.waitFor(10*time.Second, "all deliveries answered", func() bool {
		return e.metric(`worker_messages_total{outcome="duplicate",type="gps"}`)+e.metric(`worker_messages_total{outcome="stored",type="gps"}`) == 3 &&
			e.metric(`worker_messages_total{outcome="duplicate",type="photo"}`)+e.metric(`worker_messages_total{outcome="stored",type="photo"}`) == 3
	})
	if got := e.count(`SELECT count(*) FROM gps WHERE message_id = $1`, gps.MessageID); got != 1 {
		t.Fatalf("gps rows = %d, want 1", got)
	}
	if got := e.count(`SELECT count(*) FROM photo WHERE message_id = $1`, photo.MessageID); got != 1 {
		t.Fatalf("photo rows = %d, want 1", got)
	}
	for _, id := range []uuid.UUID{gps.MessageID, photo.MessageID} {
		if rows := e.audit(id); len(rows) != 1 {
			t.Fatalf("%d audit rows for %s, want 1", len(rows), id)
		}
	}
	if stored := e.metric(`worker_messages_total{outcome="stored",type="gps"}`); stored != 1 {
		t.Fatalf("stored count = %v, want 1", stored)
	}
	if o := e.orphans(); o != 0 {
		t.Fatalf("%d orphan rows", o)
	}
	e.waitFor(5*time.Second, "queues drained", func() bool { return e.drained(models.TypeGPS) && e.drained(models.TypePhoto) })

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/nothing": 404} {
		resp, err := http.Get("http://" + e.cfg.AdminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.start(worker.Options{})

	good := gpsReading(1, 2)
	outOfRange := gpsReading(91, 0)
	notAnImage := photoReading(readFixture(t, "grace_hopper.jpg"))
	notAnImage.Image = []byte("GIF89a not a jpeg")
	unknownField, _ := json.Marshal(map[string]any{"message_id": uuid.NewString(), "actor": "fleet-app", "extra": true})

	e.publishRaw(models.TypeGPS.Subject(), "poison-1", []byte(`{"message_id": "not json`))
	e.publish(models.TypeGPS, outOfRange)
	e.publish(models.TypeGPS, good) // in the same batch as the poison
	e.publish(models.TypePhoto, notAnImage)
	e.publishRaw(models.TypeGyroscope.Subject(), "poison-4", unknownField)

	e.waitFor(10*time.Second, "four dead letters", func() bool { return len(e.deadLetters()) == 4 })
	e.waitFor(10*time.Second, "the good reading", func() bool { return e.count(`SELECT count(*) FROM gps`) == 1 })

	type want struct{ subject, reason string }
	wants := map[string]want{
		"dlq.telemetry.gps":       {"telemetry.gps", ""},
		"dlq.telemetry.photo":     {"telemetry.photo", "image"},
		"dlq.telemetry.gyroscope": {"telemetry.gyroscope", "unknown field"},
	}
	gpsReasons := ""
	for _, m := range e.deadLetters() {
		w, ok := wants[m.Subject]
		if !ok {
			t.Fatalf("dead letter on %s", m.Subject)
		}
		h := m.Header
		if h.Get(messaging.HeaderDLQSubject) != w.subject || h.Get(messaging.HeaderDLQStreamSequence) == "" ||
			h.Get(messaging.HeaderDLQDeliveries) != "1" || h.Get(messaging.HeaderDLQReason) == "" {
			t.Fatalf("dead letter headers %v", h)
		}
		if !strings.Contains(h.Get(messaging.HeaderDLQReason), w.reason) {
			t.Fatalf("%s reason %q, want it to mention %q", m.Subject, h.Get(messaging.HeaderDLQReason), w.reason)
		}
		if m.Subject == "dlq.telemetry.gps" {
			gpsReasons += h.Get(messaging.HeaderDLQReason) + "\n"
		}
	}
	if !strings.Contains(gpsReasons, "latitude") || !strings.Contains(gpsReasons, "models.Unmarshal") {
		t.Fatalf("gps reasons:\n%s", gpsReasons)
	}

	// Terminated, not redelivered: nothing pending, nothing stored, and it
	// stays so past the first redelivery time.
	time.Sleep(500 * time.Millisecond)
	for _, typ := range models.Types {
		info := e.consumerInfo(typ)
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			t.Fatalf("%s consumer: pending %d, ack pending %d, redelivered %d", typ, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
	}
	if got := e.streamMsgs(); got != 0 {
		t.Fatalf("TELEMETRY still holds %d messages", got)
	}
	if len(e.deadLetters()) != 4 {
		t.Fatal("a poison message was dead-lettered twice")
	}
	if got := e.count(`SELECT count(*) FROM gps WHERE latitude > 90 OR message_id = $1`, outOfRange.MessageID); got != 0 {
		t.Fatal("the out-of-range fix was stored")
	}
	if got := e.count(`SELECT count(*) FROM photo`) + e.count(`SELECT count(*) FROM gyroscope`); got != 0 {
		t.Fatal("a poison message was stored")
	}
	e.waitFor(5*time.Second, "dead-letter audit rows", func() bool {
		return e.count(`SELECT count(*) FROM audit_log WHERE action = 'message.dead_lettered'`) == 4
	})
	rows := e.audit(outOfRange.MessageID)
	if len(rows) != 1 || rows[0].Actor != "fleet-app" || rows[0].Resource != "gps" || rows[0].ResourceID != nil ||
		!strings.Contains(fmt.Sprint(rows[0].Details["reason"]), "latitude") {
		t.Fatalf("audit of the out-of-range fix: %+v", rows)
	}
	if got := e.count(`SELECT count(*) FROM audit_log WHERE action = 'message.dead_lettered' AND message_id IS NULL AND actor = 'worker'`); got != 1 {
		t.Fatalf("audit rows of the undecodable message = %d, want 1", got)
	}
	if got := e.metric(`worker_messages_total{outcome="dead_lettered",type="gps"}`); got != 2 {
		t.Fatalf("dead-lettered gps metric = %v", got)
	}
	e.waitFor(lagWait, "DLQ gauge", func() bool { return e.metric(`worker_dlq_messages`) == 4 })
}

const lagWait = 8 * time.Second

// lockGPS holds an exclusive lock on the gps table until the returned
// release is called: every insert of the worker times out (lock_timeout),
// as with a database in trouble.
func (e *testEnv) lockGPS() (release func()) {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.db.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE gps IN ACCESS EXCLUSIVE MODE`); err != nil {
		e.t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			tx.Rollback(ctx)
		}
	}
	e.t.Cleanup(release)
	return release
}

func withLockTimeout(c *config.Worker) {
	sep := "?"
	if strings.Contains(c.DatabaseURL, "?") {
		sep = "&"
	}
	c.DatabaseURL += sep + "lock_timeout=100"
}

func TestTransientDatabaseFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withLockTimeout)
	e.start(worker.Options{})
	release := e.lockGPS()
	gps := gpsReading(-10, -20)
	e.publish(models.TypeGPS, gps)
	e.waitFor(10*time.Second, "two retries", func() bool {
		return e.metric(`worker_messages_total{outcome="retried",type="gps"}`) >= 2
	})
	if got := e.count(`SELECT count(*) FROM audit_log`); got != 0 {
		t.Fatal("audit row written while its data row could not be")
	}
	release()
	e.waitFor(10*time.Second, "the row after recovery", func() bool { return e.count(`SELECT count(*) FROM gps`) == 1 })
	if rows := e.audit(gps.MessageID); len(rows) != 1 {
		t.Fatalf("%d audit rows", len(rows))
	}
	e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypeGPS) })
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters for a transient failure", n)
	}
	if !strings.Contains(e.logs.String(), "will be retried") {
		t.Fatal("the retry was not logged")
	}
}

func TestExhaustedDeliveriesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withLockTimeout, func(c *config.Worker) { c.Topology.MaxDeliver = 3 })
	e.start(worker.Options{})
	e.lockGPS() // for good
	gps := gpsReading(-10, -20)
	e.publish(models.TypeGPS, gps)
	e.waitFor(15*time.Second, "a dead letter", func() bool { return len(e.deadLetters()) == 1 })
	dl := e.deadLetters()[0]
	if r := dl.Header.Get(messaging.HeaderDLQReason); !strings.HasPrefix(r, "exhausted 3 deliveries: ") || !strings.Contains(r, "lock") {
		t.Fatalf("reason %q", r)
	}
	if d := dl.Header.Get(messaging.HeaderDLQDeliveries); d != "3" {
		t.Fatalf("delivery count header %q", d)
	}
	var copy models.GPS
	if err := json.Unmarshal(dl.Data, &copy); err != nil || copy.MessageID != gps.MessageID {
		t.Fatalf("dead letter payload: %v %s", err, dl.Data)
	}
	e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypeGPS) && e.streamMsgs() == 0 })
}

func TestShutdownStoresTheOpenBatch(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(c *config.Worker) { c.BatchLinger = 2 * time.Second })
	stop := e.start(worker.Options{})
	const n = 10
	for i := range n {
		e.publish(models.TypeGyroscope, gyroReading(float64(i), 0, 0))
	}
	// All ten are with the worker, waiting for the batch to fill or linger.
	e.waitFor(5*time.Second, "messages delivered", func() bool {
		info := e.consumerInfo(models.TypeGyroscope)
		return info.NumPending == 0 && info.NumAckPending == n
	})
	if got := e.count(`SELECT count(*) FROM gyroscope`); got != 0 {
		t.Fatalf("batch written before it filled or lingered: %d rows", got)
	}
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run after shutdown: %v", err)
	}
	if time.Since(begin) > 1500*time.Millisecond {
		t.Fatalf("shutdown took %s: it waited for the linger", time.Since(begin))
	}
	if got := e.count(`SELECT count(*) FROM gyroscope`); got != n {
		t.Fatalf("rows after shutdown = %d, want %d", got, n)
	}
	// The server has read the acks (the worker flushed them); it applies
	// them asynchronously.
	e.waitFor(2*time.Second, "every message acknowledged after a clean shutdown", func() bool {
		return e.drained(models.TypeGyroscope)
	})
}

func TestRefusesToStartWithoutAValidKey(t *testing.T) {
	t.Parallel()
	base, err := config.LoadWorker(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/x",
			"ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	// NATS_URL points nowhere: the worker must refuse before connecting.
	base.NATSURL = "nats://127.0.0.1:1"
	for name, keys := range map[string][]crypto.Key{"no key": nil, "zero key": {{}}} {
		t.Run(name, func(t *testing.T) {
			cfg := base
			cfg.EncryptionKeys = keys
			start := time.Now()
			err := worker.Run(context.Background(), cfg, discardLog())
			if err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEYS") {
				t.Fatalf("Run = %v, want an error naming ENCRYPTION_KEYS", err)
			}
			if time.Since(start) > time.Second {
				t.Fatal("the key was checked after trying to connect")
			}
		})
	}
	if _, err := config.LoadWorker(func(k string) string {
		return map[string]string{"DATABASE_URL": "postgres://db/x"}[k]
	}); err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEY") {
		t.Fatalf("LoadWorker without a key: %v", err)
	}
}

func TestDeliveriesRunOutWithoutAnswerAreDeadLettered(t *testing.T) {
	t.Parallel()
	gps := gpsReading(45, 45)
	e := newExhaustedEnv(t, gps)
	// A worker is running when the server gives up on the message.
	e.start(worker.Options{})
	e.waitFor(10*time.Second, "dead letter", func() bool { return len(e.deadLetters()) == 1 })
	dl := e.deadLetters()[0]
	if dl.Subject != "dlq.telemetry.gps" || dl.Header.Get(messaging.HeaderDLQDeliveries) != "2" ||
		dl.Header.Get(messaging.HeaderDLQSubject) != "telemetry.gps" ||
		!strings.Contains(dl.Header.Get(messaging.HeaderDLQReason), "without an acknowledgement") {
		t.Fatalf("dead letter %s %v", dl.Subject, dl.Header)
	}
	e.waitFor(5*time.Second, "message removed from TELEMETRY", func() bool { return e.streamMsgs() == 0 })
	e.waitFor(5*time.Second, "audit row", func() bool { return len(e.audit(gps.MessageID)) == 1 })
	if a := e.audit(gps.MessageID)[0]; a.Action != "message.dead_lettered" || a.Actor != "fleet-app" || a.Resource != "gps" {
		t.Fatalf("audit %+v", a)
	}
	if n := e.count(`SELECT count(*) FROM gps`); n != 0 {
		t.Fatal("the exhausted message was stored")
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	for range 2 { // `worker migrate` twice: the second run has nothing to do
		if err := worker.Migrate(ctx, dsn); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_name IN ('gps', 'gyroscope', 'photo', 'audit_log', 'schema_migrations')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 5 {
		t.Fatalf("%d of 5 tables after migrate", tables)
	}
	if err := worker.Migrate(ctx, "postgres://127.0.0.1:1/x?connect_timeout=1"); err == nil {
		t.Fatal("migrate against no database succeeded")
	}
}

// A last delivery whose transaction committed just after its ack wait ran
// out is stored, not dead: when the server gives up on it, the message is
// only removed from TELEMETRY, without a dead letter.
func TestDeliveriesRunOutAfterTheReadingWasStored(t *testing.T) {
	t.Parallel()
	gps := gpsReading(12, 34)
	e := newExhaustedEnv(t, gps)
	ctx := context.Background()
	// The late commit of the last delivery.
	store, err := storage.Open(ctx, e.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := storage.Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	if ids, err := store.InsertGPS(ctx, []models.GPS{gps}); err != nil || len(ids) != 1 {
		t.Fatalf("InsertGPS = %v, %v", ids, err)
	}

	e.start(worker.Options{})
	e.waitFor(10*time.Second, "message removed from TELEMETRY", func() bool { return e.streamMsgs() == 0 })
	time.Sleep(200 * time.Millisecond)
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("a stored reading was dead-lettered (%d dead letters)", n)
	}
	if a := e.audit(gps.MessageID); len(a) != 1 || a[0].Action != "gps.stored" {
		t.Fatalf("audit rows %+v, want only gps.stored", a)
	}
}

// newExhaustedEnv publishes gps to a queue allowing two deliveries of one
// second each, and lets two "workers" take it and die without answering:
// the server is about to give up on it (no worker runs yet).
func newExhaustedEnv(t *testing.T, gps models.GPS) *testEnv {
	t.Helper()
	e := newTestEnv(t, func(c *config.Worker) {
		c.Topology.MaxDeliver = 2
		c.Topology.AckWait = time.Second
		c.RecognitionTimeout = 400 * time.Millisecond
	})
	e.publish(models.TypeGPS, gps)
	cons, err := e.js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			if md.NumDelivered != uint64(i) {
				t.Fatalf("delivery %d reported as %d", i, md.NumDelivered)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: got %d messages", i, n)
		}
	}
	return e
}
