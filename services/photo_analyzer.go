// Package services holds the worker's domain services. PhotoAnalyzerService
// recognises faces in telemetry photos with AWS Rekognition: it searches the
// configured face collection, indexes faces it has not seen, remembers recent
// results in memory and translates every AWS error into an *ierr.Error whose
// kind tells the worker whether to store, retry or dead-letter the photo.
package services

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// RecognitionStatus is the outcome of a photo's analysis, stored in
// photo.recognition_status.
type RecognitionStatus string

const (
	// StatusMatched: the face matched a face already in the collection (or the
	// identical photo was analysed recently).
	StatusMatched RecognitionStatus = "matched"
	// StatusNewFace: no face in the collection matched; the face was indexed.
	StatusNewFace RecognitionStatus = "new_face"
	// StatusNoFace: the photo has no face, or none good enough to index.
	// Final: the photo is stored and never retried.
	StatusNoFace RecognitionStatus = "no_face"
	// StatusDisabled: no collection is configured; Rekognition is not called.
	StatusDisabled RecognitionStatus = "disabled"
)

// Analysis is the result of analysing one photo.
type Analysis struct {
	Status     RecognitionStatus
	Recognized bool     // true only for StatusMatched
	FaceID     string   // the matched or newly indexed face; "" when none
	Similarity *float64 // 0–100 for StatusMatched; nil otherwise
}

// Defaults applied to zero fields of PhotoAnalyzerConfig. They are config's
// (the worker always passes a full, validated configuration); a zero field
// happens only in a configuration built by hand, e.g. in tests.
const (
	DefaultMatchThreshold = config.DefaultFaceMatchThreshold
	DefaultCallTimeout    = config.DefaultRecognitionTimeout
	DefaultCacheEntries   = config.DefaultRecognitionCacheEntries
	DefaultCacheTTL       = config.DefaultRecognitionCacheTTL
)

// MaxImageBytes is Rekognition's limit on image bytes sent in a request; a
// larger photo is rejected as invalid without a call.
const MaxImageBytes = 5 << 20

// PhotoAnalyzerConfig configures a PhotoAnalyzerService. Zero fields take the
// Default* values.
type PhotoAnalyzerConfig struct {
	// CollectionID is the Rekognition face collection
	// (REKOGNITION_COLLECTION_ID); "" disables recognition.
	CollectionID string
	// MatchThreshold is the minimum similarity, in (0, 100], for a search
	// result to count as the same person (FACE_MATCH_THRESHOLD).
	MatchThreshold float64
	// CallTimeout bounds each Rekognition operation, SDK retries included.
	CallTimeout time.Duration
	// CacheEntries bounds the in-memory result cache.
	CacheEntries int
	// CacheTTL is how long a cached result is trusted.
	CacheTTL time.Duration
}

// withDefaults fills cfg's zero fields and refuses what the service cannot
// work with. config.LoadWorker has already reported a wrong value under its
// variable's name; these checks catch a configuration built by hand, with
// config's rule for the collection id.
func (cfg PhotoAnalyzerConfig) withDefaults() (PhotoAnalyzerConfig, error) {
	if cfg.CollectionID != "" {
		if err := config.CheckCollectionID(cfg.CollectionID); err != nil {
			return cfg, fmt.Errorf("collection id %q: %w", cfg.CollectionID, err)
		}
	}
	if cfg.MatchThreshold == 0 {
		cfg.MatchThreshold = DefaultMatchThreshold
	}
	if math.IsNaN(cfg.MatchThreshold) || cfg.MatchThreshold <= 0 || cfg.MatchThreshold > 100 {
		return cfg, fmt.Errorf("match threshold %v: want a value in (0, 100]", cfg.MatchThreshold)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.CacheEntries == 0 {
		cfg.CacheEntries = DefaultCacheEntries
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.CallTimeout < 0 || cfg.CacheEntries < 0 || cfg.CacheTTL < 0 {
		return cfg, fmt.Errorf("call timeout, cache entries and cache TTL must not be negative")
	}
	return cfg, nil
}

// PhotoAnalyzerService recognises faces in photos. It is safe for concurrent
// use; bounding how many photos are analysed at once is the caller's job.
//
// For a photo it: looks the SHA-256 of the bytes up in a bounded in-memory
// cache (hit → StatusMatched, similarity 100, no call); else searches the
// collection for the face (SearchFacesByImage, MaxFaces 1, the match
// threshold); else indexes it (IndexFaces, MaxFaces 1, QualityFilter AUTO,
// ExternalImageId from the device id). Identical photos analysed at the same
// time share one set of calls.
type PhotoAnalyzerService struct {
	client  *rekognition.Client
	cfg     PhotoAnalyzerConfig
	cache   *faceCache
	flight  singleflight.Group
	metrics *analyzerMetrics
	log     *slog.Logger
}

// NewPhotoAnalyzerService validates cfg and builds the service. client may be
// nil only when cfg.CollectionID is "" (recognition disabled). Metrics are
// registered on reg (nil: not registered); log may be nil.
func NewPhotoAnalyzerService(client *rekognition.Client, cfg PhotoAnalyzerConfig, reg prometheus.Registerer, log *slog.Logger) (*PhotoAnalyzerService, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("photo analyzer config: %w", err)
	}
	if cfg.CollectionID != "" && client == nil {
		return nil, fmt.Errorf("photo analyzer config: collection %q configured without a Rekognition client", cfg.CollectionID)
	}
	m, err := newAnalyzerMetrics(reg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &PhotoAnalyzerService{
		client:  client,
		cfg:     cfg,
		cache:   newFaceCache(cfg.CacheEntries, cfg.CacheTTL, time.Now),
		metrics: m,
		log:     log,
	}
	if !s.Enabled() {
		log.Warn("face recognition disabled: no Rekognition collection configured (REKOGNITION_COLLECTION_ID is empty); photos are stored with recognition_status=disabled")
	}
	return s, nil
}

// Enabled reports whether a collection is configured.
func (s *PhotoAnalyzerService) Enabled() bool { return s.cfg.CollectionID != "" }

// Analyze recognises the face in image, a JPEG or PNG sent by deviceID.
//
// A photo without a usable face is not an error: it yields StatusNoFace.
// Errors are *ierr.Error: ierr.Unavailable (throttling, 5xx, network,
// time-out, ctx done: retry later), ierr.Invalid (Rekognition rejects the
// image: dead-letter), ierr.Misconfigured (access denied, collection missing,
// bad credentials: retry later and alert; counted in rekognition_calls_total
// with outcome "misconfigured").
//
// If ctx ends while Rekognition is being called, Analyze returns at once but
// the calls run to completion (each bounded by CallTimeout) and their result
// is cached, so a redelivered photo neither calls again nor indexes its face
// twice.
func (s *PhotoAnalyzerService) Analyze(ctx context.Context, deviceID string, image []byte) (Analysis, error) {
	return s.AnalyzeMessage(ctx, "", deviceID, image)
}

// AnalyzeMessage is Analyze for the photo of one queue message. A repeat of
// the same message (a redelivery after its row could not be written) gets
// the analysis its first delivery got, from the cache, instead of a match of
// the photo with the face it was itself indexed as.
func (s *PhotoAnalyzerService) AnalyzeMessage(ctx context.Context, messageID, deviceID string, image []byte) (Analysis, error) {
	const op = "services.PhotoAnalyzerService.Analyze"
	if !s.Enabled() {
		return Analysis{Status: StatusDisabled}, nil
	}
	if len(image) == 0 {
		return Analysis{}, ierr.Errorf(ierr.Invalid, op, "empty image")
	}
	if len(image) > MaxImageBytes {
		return Analysis{}, ierr.Errorf(ierr.Invalid, op, "image of %d bytes exceeds Rekognition's %d", len(image), MaxImageBytes)
	}

	key := imageKey(sha256.Sum256(image))
	if e, ok := s.cache.get(key); ok {
		s.metrics.cache.WithLabelValues("hit").Inc()
		markCache(ctx, "hit")
		return e.analysisFor(messageID), nil
	}
	s.metrics.cache.WithLabelValues("miss").Inc()
	markCache(ctx, "miss")
	if err := ctx.Err(); err != nil {
		return Analysis{}, ierr.E(ierr.Unavailable, op, err)
	}

	// Only the caller whose function runs (the leader) sets led; the others
	// get the leader's result, which for them is a repeat of the same photo.
	led := false
	ch := s.flight.DoChan(string(key[:]), func() (any, error) {
		led = true
		if e, ok := s.cache.get(key); ok { // a flight ended between our get and DoChan
			return e.analysisFor(messageID), nil
		}
		return s.analyze(context.WithoutCancel(ctx), messageID, deviceID, image, key)
	})
	select {
	case <-ctx.Done():
		return Analysis{}, ierr.E(ierr.Unavailable, op, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return Analysis{}, r.Err
		}
		a := r.Val.(Analysis)
		if !led && a.FaceID != "" {
			// A follower is a repeat of the leader's photo, unless it is the
			// same message retried while the analysis was still running.
			if e, ok := s.cache.get(key); ok {
				return e.analysisFor(messageID), nil
			}
			a = cachedAnalysis(a.FaceID)
		}
		return a, nil
	}
}

// analysisFor is what a cached photo is for message messageID: the first
// analysis for the message that filled the entry, a repeat for any other.
func (e cacheEntry) analysisFor(messageID string) Analysis {
	if messageID != "" && messageID == e.origin {
		return e.first
	}
	return cachedAnalysis(e.faceID)
}

// cachedAnalysis is the result for a photo whose identical bytes were analysed
// before: the same face, with similarity 100 ("" means no face).
func cachedAnalysis(faceID string) Analysis {
	if faceID == "" {
		return Analysis{Status: StatusNoFace}
	}
	sim := 100.0
	return Analysis{Status: StatusMatched, Recognized: true, FaceID: faceID, Similarity: &sim}
}

// analyze calls Rekognition for a photo not in the cache and caches the result.
func (s *PhotoAnalyzerService) analyze(ctx context.Context, messageID, deviceID string, image []byte, key imageKey) (Analysis, error) {
	remember := func(a Analysis) (Analysis, error) {
		s.cache.put(key, cacheEntry{faceID: a.FaceID, origin: messageID, first: a})
		return a, nil
	}
	matches, noFace, err := s.search(ctx, image)
	if err != nil {
		return Analysis{}, err
	}
	match := firstAbove(matches, s.cfg.MatchThreshold)
	switch {
	case noFace:
		return remember(Analysis{Status: StatusNoFace})
	case match != nil && messageID != "" && strings.HasSuffix(match.externalImageID, ":"+messageID):
		// The face was indexed from this very message by an earlier delivery
		// whose row was never written (possibly on another worker): it is
		// this photo's own new face, not a recognition.
		return remember(Analysis{Status: StatusNewFace, FaceID: match.faceID})
	case match != nil:
		sim := match.similarity
		return remember(Analysis{Status: StatusMatched, Recognized: true, FaceID: match.faceID, Similarity: &sim})
	}

	faceID, err := s.index(ctx, messageID, deviceID, image)
	if err != nil {
		return Analysis{}, err
	}
	if faceID == "" {
		return remember(Analysis{Status: StatusNoFace})
	}
	return remember(Analysis{Status: StatusNewFace, FaceID: faceID})
}

// firstAbove is the best match that reaches the threshold (Rekognition lists
// matches by similarity, highest first), or nil: the face is not in the
// collection.
func firstAbove(matches []faceMatch, threshold float64) *faceMatch {
	for i := range matches {
		if matches[i].similarity >= threshold {
			return &matches[i]
		}
	}
	return nil
}

// markCache notes on the span of the photo's processing whether the cache
// answered (a photo's trace without Rekognition spans is then explained).
func markCache(ctx context.Context, result string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("photo.analysis.cache", result))
	}
}
