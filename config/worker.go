package config

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// Worker is the configuration of cmd/worker.
type Worker struct {
	AdminAddr string // /metrics, /healthz, /readyz; keep it private
	NATSURL   string // one URL or a comma-separated list of a cluster's URLs
	// NATSConnectWait is how long start-up keeps trying to reach NATS.
	NATSConnectWait time.Duration
	// DatabaseURL is the PostgreSQL DSN (URL or key=value form). Never log it.
	DatabaseURL string

	// EncryptionKeys seal photos at rest; the first is active, the others
	// open rows sealed before a rotation. Never empty: there is no plaintext
	// fallback.
	EncryptionKeys []crypto.Key

	// RekognitionCollectionID is the face collection; "" disables face
	// recognition (photos are stored with recognition_status "disabled").
	RekognitionCollectionID string
	// FaceMatchThreshold is the minimum similarity (percent) of a match.
	FaceMatchThreshold float64
	// AWSRegion overrides the region of the standard AWS configuration.
	AWSRegion string
	// RekognitionEndpoint (AWS_ENDPOINT_URL_REKOGNITION) points the client at
	// an emulator or a test server; "" leaves the standard endpoint.
	RekognitionEndpoint string
	// AWSCredentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN) are used when complete; otherwise the standard AWS
	// chain finds credentials. Never logged.
	AWSCredentials AWSCredentials
	// RecognitionTimeout bounds each Rekognition operation, SDK retries included.
	RecognitionTimeout time.Duration
	// CacheEntries and CacheTTL bound the in-memory cache of analysis results.
	CacheEntries int
	CacheTTL     time.Duration

	// BatchSize and BatchLinger shape the GPS and gyroscope batches: a batch
	// is written when it holds BatchSize messages or its first message has
	// waited BatchLinger, whichever comes first.
	BatchSize   int
	BatchLinger time.Duration
	// PhotoConcurrency is how many photos are analysed and stored at once.
	PhotoConcurrency int
	// RetryBackoff is the NakWithDelay schedule of transient failures,
	// indexed by delivery count (the last entry repeats).
	RetryBackoff []time.Duration
	// DLQSweepInterval is how often TELEMETRY is swept for messages whose
	// deliveries ran out and whose advisory was lost
	// (messaging.DLQ.RunSweeps); 0 is messaging.DefaultSweepInterval.
	DLQSweepInterval time.Duration

	Limits          models.Limits
	Topology        messaging.TopologyConfig
	LogLevel        slog.Level
	ShutdownTimeout time.Duration // bounds the final batch, in-flight photos and the NATS drain
}

// Defaults of the worker configuration.
const (
	DefaultWorkerAdminAddr            = ":8082"
	DefaultFaceMatchThreshold         = 90.0
	DefaultRecognitionTimeout         = 10 * time.Second
	DefaultRecognitionCacheEntries    = 10_000
	DefaultRecognitionCacheTTL        = time.Hour
	DefaultBatchSize                  = 500
	DefaultBatchLinger                = 50 * time.Millisecond
	DefaultPhotoConcurrency           = 4
	DefaultWorkerShutdownTimeout      = 25 * time.Second
	defaultRetryBackoff               = "1s,5s,15s,30s,1m,2m,5m"
	maxRetryBackoffEntries            = 32
	maxBatchSize, maxPhotoConcurrency = 10_000, 256
)

// LoadWorker reads the worker configuration from the environment and
// validates it across fields. The error names every wrong variable and never
// echoes a secret (database password, key material).
func LoadWorker(getenv Getenv) (Worker, error) {
	e := &env{get: getenv}
	exampleKeys := e.refuseExampleKeys()
	lim := models.DefaultLimits()
	lim.MaxFutureSkew = e.duration("MAX_FUTURE_SKEW", lim.MaxFutureSkew, 0)
	c := Worker{
		AdminAddr:               e.addr("ADMIN_ADDR", DefaultWorkerAdminAddr),
		NATSURL:                 e.natsURL("NATS_URL", DefaultNATSURL),
		NATSConnectWait:         e.duration("NATS_CONNECT_TIMEOUT", DefaultNATSConnectTimeout, 0),
		DatabaseURL:             e.databaseURL("DATABASE_URL"),
		RekognitionCollectionID: e.collectionID("REKOGNITION_COLLECTION_ID"),
		FaceMatchThreshold:      e.float("FACE_MATCH_THRESHOLD", DefaultFaceMatchThreshold, 0, 100),
		AWSRegion:               e.str("AWS_REGION", ""),
		RekognitionEndpoint:     e.rekognitionEndpoint(),
		AWSCredentials:          e.awsCredentials(),
		RecognitionTimeout:      e.duration("RECOGNITION_TIMEOUT", DefaultRecognitionTimeout, 100*time.Millisecond),
		CacheEntries:            e.int("RECOGNITION_CACHE_ENTRIES", DefaultRecognitionCacheEntries, 1, 10_000_000),
		CacheTTL:                e.duration("RECOGNITION_CACHE_TTL", DefaultRecognitionCacheTTL, time.Second),
		BatchSize:               e.int("BATCH_SIZE", DefaultBatchSize, 1, maxBatchSize),
		BatchLinger:             e.duration("BATCH_LINGER", DefaultBatchLinger, time.Millisecond),
		PhotoConcurrency:        e.int("PHOTO_CONCURRENCY", DefaultPhotoConcurrency, 1, maxPhotoConcurrency),
		RetryBackoff:            e.durations("RETRY_BACKOFF", defaultRetryBackoff, maxRetryBackoffEntries),
		DLQSweepInterval:        e.duration("DLQ_SWEEP_INTERVAL", messaging.DefaultSweepInterval, time.Second),
		Limits:                  lim,
		Topology:                e.topology(),
		LogLevel:                e.logLevel(),
		ShutdownTimeout:         e.duration("SHUTDOWN_TIMEOUT", DefaultWorkerShutdownTimeout, time.Second),
	}
	e.refuseExamplePassword("DATABASE_URL", c.DatabaseURL)
	if !exampleKeys {
		keys, err := crypto.ParseKeys(e.get("ENCRYPTION_KEYS"), e.get("ENCRYPTION_KEY"))
		if err != nil {
			e.errs = append(e.errs, err) // already names the variable, never the key
		}
		c.EncryptionKeys = keys
	}
	if len(e.errs) == 0 {
		e.errs = append(e.errs, c.check()...)
	}
	if err := e.err(); err != nil {
		return Worker{}, fmt.Errorf("worker configuration: %w", err)
	}
	return c, nil
}

// Validate checks a configuration built by hand (tests, the dev stack) by
// the same cross-field rules LoadWorker applies.
func (c Worker) Validate() error {
	e := &env{}
	e.errs = c.check()
	return e.err()
}

func (c Worker) check() []error {
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.AdminAddr == "" {
		fail("ADMIN_ADDR", "is required")
	}
	if c.NATSURL == "" {
		fail("NATS_URL", "is required")
	}
	if c.DatabaseURL == "" {
		fail("DATABASE_URL", "is required")
	}
	if len(c.EncryptionKeys) == 0 {
		fail("ENCRYPTION_KEYS", "at least one key is required (photos are never stored unencrypted)")
	} else if _, err := crypto.NewSealer(c.EncryptionKeys); err != nil {
		fail("ENCRYPTION_KEYS", "%v", err)
	}
	if c.RekognitionCollectionID != "" {
		if err := CheckCollectionID(c.RekognitionCollectionID); err != nil {
			fail("REKOGNITION_COLLECTION_ID", "%v", err)
		}
	}
	if !(c.FaceMatchThreshold > 0 && c.FaceMatchThreshold <= 100) {
		fail("FACE_MATCH_THRESHOLD", "must be greater than 0 and at most 100")
	}
	if c.RecognitionTimeout <= 0 {
		fail("RECOGNITION_TIMEOUT", "must be positive")
	} else if 2*c.RecognitionTimeout >= c.Topology.AckWait {
		// A photo may need two calls (search, then index) before its ack.
		fail("RECOGNITION_TIMEOUT", "must be less than half of CONSUMER_ACK_WAIT (%s) so a photo is answered before it is redelivered", c.Topology.AckWait)
	}
	if c.CacheEntries < 1 {
		fail("RECOGNITION_CACHE_ENTRIES", "must be at least 1")
	}
	if c.CacheTTL <= 0 {
		fail("RECOGNITION_CACHE_TTL", "must be positive")
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
		fail("BATCH_SIZE", "must be between 1 and %d", maxBatchSize)
	} else if c.BatchSize > c.Topology.MaxAckPending {
		fail("BATCH_SIZE", "must not exceed CONSUMER_MAX_ACK_PENDING (%d): a batch can never fill beyond it", c.Topology.MaxAckPending)
	}
	if c.BatchLinger <= 0 {
		fail("BATCH_LINGER", "must be positive")
	} else if c.BatchLinger >= c.Topology.AckWait/2 {
		fail("BATCH_LINGER", "must be well under CONSUMER_ACK_WAIT (%s)", c.Topology.AckWait)
	}
	if c.PhotoConcurrency < 1 || c.PhotoConcurrency > maxPhotoConcurrency {
		fail("PHOTO_CONCURRENCY", "must be between 1 and %d", maxPhotoConcurrency)
	}
	if len(c.RetryBackoff) == 0 {
		fail("RETRY_BACKOFF", "must list at least one delay")
	}
	for _, d := range c.RetryBackoff {
		if d <= 0 {
			fail("RETRY_BACKOFF", "delays must be positive")
			break
		}
	}
	if c.DLQSweepInterval < 0 {
		fail("DLQ_SWEEP_INTERVAL", "must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		fail("SHUTDOWN_TIMEOUT", "must be positive")
	}
	checkShared(c.Limits, c.Topology, fail)
	return errs
}

// LogValue is what start-up logs of the configuration: no DSN, no key
// material, no NATS credentials.
func (c Worker) LogValue() slog.Value {
	ids := make([]string, len(c.EncryptionKeys))
	for i, k := range c.EncryptionKeys {
		ids[i] = k.ID()
	}
	return slog.GroupValue(
		slog.String("admin_addr", c.AdminAddr),
		slog.Any("encryption_key_ids", ids),
		slog.String("rekognition_collection_id", c.RekognitionCollectionID),
		slog.Float64("face_match_threshold", c.FaceMatchThreshold),
		slog.Int("batch_size", c.BatchSize),
		slog.String("batch_linger", c.BatchLinger.String()), // "50ms", not nanoseconds, in JSON logs
		slog.Int("photo_concurrency", c.PhotoConcurrency),
		slog.Int("max_deliver", c.Topology.MaxDeliver),
		slog.String("ack_wait", c.Topology.AckWait.String()),
	)
}
