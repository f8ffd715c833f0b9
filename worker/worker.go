// Package worker consumes the telemetry queues and stores every reading
// exactly once in PostgreSQL, with its audit row, photos sealed with
// AES-256-GCM after face analysis.
//
// GPS and gyroscope messages are written in batches (one transaction per
// batch); photos one at a time with bounded concurrency. A message is
// acknowledged only after the transaction holding its row commits. Failures
// are answered in one place (decide): invalid messages go to the dead-letter
// stream, transient failures are retried with back-off until MaxDeliver, and
// a misconfigured dependency pauses processing instead of dead-lettering.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/metrics"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/services"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Analyzer recognises faces in photos. services.PhotoAnalyzerService is the
// production one; its errors are *ierr.Error (Unavailable, Invalid,
// Misconfigured), which decide turns into retry, dead letter or hold.
type Analyzer interface {
	// AnalyzeMessage analyses the photo of message messageID; a repeat of
	// the same message gets the same answer.
	AnalyzeMessage(ctx context.Context, messageID, deviceID string, image []byte) (services.Analysis, error)
}

// Options are dependencies a test may supply instead of having Run build
// them from the configuration. (The dev stack needs none: it points the
// worker at its Rekognition emulator through the configuration.)
type Options struct {
	// Analyzer replaces the services.PhotoAnalyzerService built from cfg.
	Analyzer Analyzer
	// Rekognition is the client of that service when a collection is
	// configured (e.g. one with a test's short retry back-off); nil builds
	// one from cfg and the standard AWS configuration.
	Rekognition *services.RekognitionClient
	// PullExpiry is the expiry of the GPS and gyroscope pull requests, whose
	// heartbeats come every half of it (at least 1 s); 0 keeps the client's
	// 30 s. Tests shorten it to miss heartbeats quickly.
	PullExpiry time.Duration
}

// lagPollInterval is how often consumer lag and the DLQ size are read.
const lagPollInterval = 5 * time.Second

// worker is the running state shared by the consumers.
type worker struct {
	cfg      config.Worker
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	store    *storage.Store
	sealer   *crypto.Sealer
	analyzer Analyzer
	metrics  *consumerMetrics
	// announcer publishes each stored reading for the read API's live stream.
	announcer *announcer
	// dlq writes dead letters, keeping TELEMETRY_DLQ under DLQ_MAX_BYTES.
	dlq *messaging.DLQ
	// outage pauses the consumers while the database is down.
	outage *outage
	// pullExpiry is Options.PullExpiry.
	pullExpiry time.Duration
}

// Run runs the worker until ctx is cancelled, then shuts down gracefully:
// it stops pulling, stores and acknowledges the open batches, lets photos
// in flight finish, and closes its connections. It returns nil after a clean
// shutdown and an error when start-up fails or a consumer cannot go on.
func Run(ctx context.Context, cfg config.Worker, log *slog.Logger) error {
	return RunWith(ctx, cfg, log, Options{})
}

// RunWith is Run with dependencies supplied by the caller.
func RunWith(ctx context.Context, cfg config.Worker, log *slog.Logger, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("worker configuration: %w", err)
	}
	// Keys first: no connection is opened by a worker that could not seal.
	sealer, err := crypto.NewSealer(cfg.EncryptionKeys)
	if err != nil {
		return err
	}
	log.Info("worker starting", "config", cfg)
	reg := metrics.NewRegistry()
	w := &worker{cfg: cfg, log: log, sealer: sealer, pullExpiry: opts.PullExpiry}
	if w.metrics, err = newConsumerMetrics(reg); err != nil {
		return err
	}
	// The Rekognition client next, for the same reason: missing AWS region or
	// credentials stop the worker before it connects to anything.
	var svc *services.PhotoAnalyzerService
	if w.analyzer = opts.Analyzer; w.analyzer == nil {
		if svc, err = newAnalyzer(ctx, cfg, opts.Rekognition, reg, log); err != nil {
			return err
		}
		w.analyzer = svc
	}

	w.nc, err = messaging.Connect(ctx, cfg.NATSURL, "challenge-worker", cfg.NATSConnectWait)
	if err != nil {
		return err
	}
	defer w.nc.Close()
	// Dead letters carry photos: the server must take 8 MiB messages.
	if err := messaging.CheckMaxPayload(w.nc); err != nil {
		return err
	}
	if w.announcer, err = newAnnouncer(w.nc, reg, log); err != nil {
		return err
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return ierr.E(ierr.Internal, "worker.Run", err)
	}
	if err := messaging.EnsureTopologyWithin(ctx, w.js, cfg.Topology, cfg.NATSConnectWait, log); err != nil {
		return err
	}
	if w.dlq, err = messaging.NewDLQ(w.js, reg, log); err != nil {
		return err
	}

	if w.store, err = openStore(ctx, cfg.DatabaseURL, cfg.NATSConnectWait); err != nil {
		return err
	}
	defer w.store.Close()
	if err := storage.Migrate(ctx, w.store.Pool()); err != nil {
		return err
	}
	w.outage = newOutage(w.store.Ping, w.metrics, log)

	if svc != nil && svc.Enabled() {
		// Fail fast: a worker that cannot reach its collection at start-up
		// is misconfigured, and a crash loop is the clearest signal.
		if err := svc.EnsureCollection(ctx); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	admin := metrics.NewServer(reg, w.ready, log)

	exhausted, err := w.watchExhausted(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	defer exhausted.Stop()

	g, gctx := errgroup.WithContext(ctx)
	// Soft stop: gctx ends, consumers stop pulling. Hard stop: ShutdownTimeout
	// later, work ends and so does whatever the consumers still do.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	context.AfterFunc(gctx, func() { time.AfterFunc(cfg.ShutdownTimeout, stopWork) })
	g.Go(func() error {
		if err := admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin listener: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return admin.Shutdown(sctx)
	})
	g.Go(func() error {
		return runBatches(gctx, work, w, storedItems(w.store.InsertGPS, func(it models.GPSItem) models.ItemMeta { return it.ItemMeta }))
	})
	g.Go(func() error {
		return runBatches(gctx, work, w, storedItems(w.store.InsertGyroscope, func(it models.GyroscopeItem) models.ItemMeta { return it.ItemMeta }))
	})
	g.Go(func() error { return w.runPhotos(gctx, work) })
	g.Go(func() error { w.pollLag(gctx); return nil })
	g.Go(func() error { w.dlq.RunSweeps(gctx, cfg.DLQSweepInterval, w.stored, w.onExhausted); return nil })
	log.Info("worker running", "admin_addr", ln.Addr().String())

	err = g.Wait()
	if err != nil {
		log.Error("worker stopping after an error", "err", err)
	} else {
		log.Info("worker stopped")
	}
	// Acks and naks are sent; make sure the server has them before closing.
	if ferr := w.nc.FlushTimeout(cfg.ShutdownTimeout); ferr != nil && err == nil {
		log.Warn("final flush to NATS failed; unacknowledged messages will be redelivered", "err", ferr)
	}
	return err
}

// watchExhausted starts the watch that dead-letters messages whose
// deliveries ran out, trying again for up to NATSConnectWait while NATS
// does not answer: in a cluster, a consumer EnsureTopology has just created
// has no leader for a few seconds, and its info request goes unanswered
// (seen in e2e TestNATSClusterLeaderKilled: the worker exited at start-up).
func (w *worker) watchExhausted(ctx context.Context) (jetstream.ConsumeContext, error) {
	deadline := time.Now().Add(w.cfg.NATSConnectWait)
	for {
		cc, err := w.dlq.WatchExhausted(ctx, w.stored, w.onExhausted, func(err error) {
			w.log.Error("dead-lettering a message whose deliveries ran out failed; it is retried", "err", err)
		})
		if err == nil || !ierr.Is(err, ierr.Unavailable) || time.Now().After(deadline) {
			return cc, err
		}
		w.log.Warn("watch of exhausted deliveries not started; trying again", "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// Migrate applies the database migrations and returns (`worker migrate`).
func Migrate(ctx context.Context, databaseURL string) error {
	st, err := storage.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	return storage.Migrate(ctx, st.Pool())
}

// openStore connects to PostgreSQL, waiting up to wait for it to come up
// (containers start in any order).
func openStore(ctx context.Context, dsn string, wait time.Duration) (*storage.Store, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := storage.Open(ctx, dsn)
		if err == nil || !ierr.Is(err, ierr.Unavailable) || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

// newAnalyzer builds the photo analyzer, and the face collection when one is
// configured. With no collection it analyses nothing and every photo is
// stored with recognition_status "disabled" (the service logs so).
func newAnalyzer(ctx context.Context, cfg config.Worker, client *services.RekognitionClient, reg prometheus.Registerer, log *slog.Logger) (*services.PhotoAnalyzerService, error) {
	if cfg.RekognitionCollectionID != "" && client == nil {
		var err error
		client, err = services.NewRekognitionClientFromConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
	}
	if cfg.RekognitionCollectionID == "" {
		client = nil
	}
	svc, err := services.NewPhotoAnalyzerService(client, services.PhotoAnalyzerConfig{
		CollectionID:   cfg.RekognitionCollectionID,
		MatchThreshold: cfg.FaceMatchThreshold,
		CallTimeout:    cfg.RecognitionTimeout,
		CacheEntries:   cfg.CacheEntries,
		CacheTTL:       cfg.CacheTTL,
	}, reg, log)
	if err != nil {
		return nil, ierr.E(ierr.Misconfigured, "worker.newAnalyzer", err)
	}
	return svc, nil
}

// stored reports whether the reading a queue message carries is in its
// table. An undecodable message is not: it is dead-lettered.
func (w *worker) stored(ctx context.Context, t models.Type, data []byte) (bool, error) {
	var m struct {
		MessageID uuid.UUID `json:"message_id"`
	}
	if json.Unmarshal(data, &m) != nil || m.MessageID == uuid.Nil {
		return false, nil
	}
	return w.store.Stored(ctx, t, m.MessageID)
}

// onExhausted audits a message whose deliveries ran out, dead-lettered by
// messaging's advisory watch or sweep.
func (w *worker) onExhausted(ex messaging.Exhausted) {
	w.metrics.count(ex.Type, outcomeDeadLettered, 1)
	w.log.Warn("message dead-lettered", "type", ex.Type, "stream_seq", ex.Sequence, "deliveries", ex.Deliveries, "reason", ex.Reason)
	w.auditDeadLetter(context.Background(), ex.Type, ex.Data, ex.Reason, ex.Sequence, ex.Deliveries)
}

// pollLag reads consumer lag, the age of each type's oldest unacknowledged
// message and the DLQ size into gauges until ctx is done. The age costs a
// read of that message (a photo: megabytes), so it is read only for a type
// with something unacknowledged.
func (w *worker) pollLag(ctx context.Context) {
	tick := time.NewTicker(lagPollInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, lagPollInterval)
		stream, serr := w.js.Stream(pctx, messaging.StreamName)
		for _, t := range models.Types {
			c, err := w.js.Consumer(pctx, messaging.StreamName, messaging.ConsumerName(t))
			if err != nil {
				continue
			}
			info := c.CachedInfo()
			w.metrics.pending.WithLabelValues(string(t)).Set(float64(info.NumPending))
			w.metrics.ackPending.WithLabelValues(string(t)).Set(float64(info.NumAckPending))
			if info.NumPending == 0 && info.NumAckPending == 0 {
				w.metrics.oldestAge.WithLabelValues(string(t)).Set(0)
			} else if serr == nil {
				if age, _, err := messaging.OldestUnacked(pctx, stream, t, time.Now()); err == nil {
					w.metrics.oldestAge.WithLabelValues(string(t)).Set(age.Seconds())
				}
			}
		}
		if s, err := w.js.Stream(pctx, messaging.DLQStreamName); err == nil {
			w.metrics.dlq.Set(float64(s.CachedInfo().State.Msgs))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
