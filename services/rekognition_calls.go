package services

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// The Rekognition operations PhotoAnalyzerService calls, one function each:
// the request it sends, its metrics, and the translation of the answer into
// plain values and of its error into an *ierr.Error, and its span (a child
// of the photo's processing, see tracing.StartRekognition). What the answers
// mean for a photo (cache, search then index, threshold, no face) is decided
// in photo_analyzer.go.

// EnsureCollection creates the collection if it does not exist; an existing
// one (also one created concurrently by another worker) is fine. No-op when
// disabled. Only DescribeCollection is needed when the collection exists, so
// a deployment that pre-creates it can withhold rekognition:CreateCollection.
func (s *PhotoAnalyzerService) EnsureCollection(ctx context.Context) error {
	if !s.Enabled() {
		return nil
	}
	id := s.cfg.CollectionID

	cctx, c := s.begin(ctx, opDescribeCollection)
	cctx, cancel := context.WithTimeout(cctx, s.cfg.CallTimeout)
	desc, err := s.client.DescribeCollection(cctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String(id)})
	cancel()
	switch {
	case err == nil:
		s.done(c, outcomeSuccess)
		s.log.InfoContext(ctx, "rekognition collection ready", "collection", id, "faces", aws.ToInt64(desc.FaceCount), "face_model_version", aws.ToString(desc.FaceModelVersion))
		return nil
	case isCode(err, codeResourceNotFound):
		s.done(c, outcomeNotFound)
	default:
		return s.fail(c, err)
	}

	cctx, c = s.begin(ctx, opCreateCollection)
	cctx, cancel = context.WithTimeout(cctx, s.cfg.CallTimeout)
	defer cancel()
	created, err := s.client.CreateCollection(cctx, &rekognition.CreateCollectionInput{CollectionId: aws.String(id)})
	switch {
	case err == nil:
		s.done(c, outcomeSuccess)
		s.log.InfoContext(ctx, "rekognition collection created", "collection", id, "arn", aws.ToString(created.CollectionArn))
		return nil
	case isCode(err, codeResourceAlreadyExists):
		s.done(c, outcomeAlreadyExists)
		return nil
	default:
		return s.fail(c, err)
	}
}

type faceMatch struct {
	faceID          string
	similarity      float64
	externalImageID string
}

// search looks the photo's largest face up in the collection. It reports
// noFace when Rekognition finds no face, and otherwise the well-formed
// matches Rekognition returned (at or above the threshold it was sent);
// which one counts is the caller's decision.
//
// Rekognition answers a search on an image without a face with
// InvalidParameterException, the code it also uses for a genuinely invalid
// parameter, and only the wording of its message tells the two apart. The
// wording is not part of the API, so that answer is settled by DetectFaces:
// no face detected → noFace; a face detected → the parameter really was
// invalid, and the photo is dead-lettered as before.
func (s *PhotoAnalyzerService) search(ctx context.Context, image []byte) (matches []faceMatch, noFace bool, err error) {
	// ctx is the search's span from here on: a DetectFaces that settles its
	// answer is its child.
	ctx, c := s.begin(ctx, opSearchFacesByImage)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	out, err := s.client.SearchFacesByImage(cctx, &rekognition.SearchFacesByImageInput{
		CollectionId:       aws.String(s.cfg.CollectionID),
		Image:              &types.Image{Bytes: image},
		FaceMatchThreshold: aws.Float32(float32(s.cfg.MatchThreshold)),
		MaxFaces:           aws.Int32(1),
		// NONE (the API default) on purpose: recognise a known person even in a
		// poor photo; quality is enforced when indexing instead.
		QualityFilter: types.QualityFilterNone,
	})
	took := time.Since(c.start)
	switch {
	case err == nil:
		s.end(c, took, outcomeSuccess, nil)
	case isCode(err, codeInvalidParameter):
		// The search is counted once its answer is settled: no_face, invalid,
		// or (DetectFaces failed) that failure's outcome, under which the
		// photo is retried.
		faces, derr := s.detect(ctx, image)
		switch {
		case derr != nil:
			_, outcome := classify(derr)
			s.end(c, took, outcome, derr)
			return nil, false, derr
		case faces == 0:
			s.end(c, took, outcomeNoFace, nil)
			return nil, true, nil
		default:
			kind, outcome := classify(err)
			s.end(c, took, outcome, err)
			return nil, false, ierr.E(kind, "rekognition."+opSearchFacesByImage, err)
		}
	default:
		return nil, false, s.fail(c, err)
	}
	for _, m := range out.FaceMatches {
		if m.Face == nil || aws.ToString(m.Face.FaceId) == "" || m.Similarity == nil {
			continue
		}
		matches = append(matches, faceMatch{faceID: *m.Face.FaceId, similarity: float32To64(*m.Similarity), externalImageID: aws.ToString(m.Face.ExternalImageId)})
	}
	return matches, false, nil
}

// detect counts the faces Rekognition detects in image (DetectFaces). It is
// called only to settle a search's InvalidParameterException, so only
// faceless photos, and rejected parameters, cost the extra call.
func (s *PhotoAnalyzerService) detect(ctx context.Context, image []byte) (int, error) {
	ctx, c := s.begin(ctx, opDetectFaces)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	out, err := s.client.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: &types.Image{Bytes: image}})
	if err != nil {
		return 0, s.fail(c, err)
	}
	s.done(c, outcomeSuccess)
	return len(out.FaceDetails), nil
}

// index adds the photo's largest face to the collection and returns its face
// id, or "" when Rekognition found no face good enough to index.
func (s *PhotoAnalyzerService) index(ctx context.Context, messageID, deviceID string, image []byte) (string, error) {
	ctx, c := s.begin(ctx, opIndexFaces)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	out, err := s.client.IndexFaces(ctx, &rekognition.IndexFacesInput{
		CollectionId:    aws.String(s.cfg.CollectionID),
		Image:           &types.Image{Bytes: image},
		ExternalImageId: aws.String(faceTag(deviceID, messageID)),
		MaxFaces:        aws.Int32(1),
		// AUTO: keep blurred, dark or tiny faces out of the collection, where
		// they would produce false matches for every later photo.
		QualityFilter: types.QualityFilterAuto,
	})
	if err != nil {
		return "", s.fail(c, err)
	}
	s.done(c, outcomeSuccess)
	for _, r := range out.FaceRecords {
		if r.Face != nil && aws.ToString(r.Face.FaceId) != "" {
			return *r.Face.FaceId, nil
		}
	}
	if len(out.UnindexedFaces) > 0 {
		var reasons []string
		for _, u := range out.UnindexedFaces {
			for _, r := range u.Reasons {
				reasons = append(reasons, string(r))
			}
		}
		s.log.DebugContext(ctx, "face not indexed", "device_id", deviceID, "reasons", reasons)
	}
	return "", nil
}

// call is one Rekognition operation under way: its name, its start and its
// span, which begin starts and end ends.
type call struct {
	op    string
	start time.Time
	span  trace.Span
}

// begin starts operation op: its span, a child of ctx's, and its clock.
func (s *PhotoAnalyzerService) begin(ctx context.Context, op string) (context.Context, call) {
	ctx, span := tracing.StartRekognition(ctx, op)
	return ctx, call{op: op, start: time.Now(), span: span}
}

// done ends c, which answered with outcome, now.
func (s *PhotoAnalyzerService) done(c call, outcome string) {
	s.end(c, time.Since(c.start), outcome, nil)
}

// end records c in the metrics, as having taken took and answered with
// outcome, and ends its span, failed with err when err is not nil (an
// answer the analysis expects, such as no face, is not a failure).
func (s *PhotoAnalyzerService) end(c call, took time.Duration, outcome string, err error) {
	s.metrics.duration.WithLabelValues(c.op).Observe(took.Seconds())
	s.metrics.calls.WithLabelValues(c.op, outcome).Inc()
	if c.span.IsRecording() {
		c.span.SetAttributes(attribute.String("rekognition.outcome", outcome))
	}
	tracing.End(c.span, err)
}

// fail ends a failed operation and translates its error.
func (s *PhotoAnalyzerService) fail(c call, err error) error {
	kind, outcome := classify(err)
	s.end(c, time.Since(c.start), outcome, err)
	return ierr.E(kind, "rekognition."+c.op, err)
}

// ExternalImageID derives the ExternalImageId stored with an indexed face from
// a device id: characters outside Rekognition's [a-zA-Z0-9_.\-:] become "_",
// the result is cut to 255 bytes, and an empty id becomes "unknown".
func ExternalImageID(deviceID string) string {
	const maxLen = 255
	var b strings.Builder
	for _, r := range deviceID {
		if b.Len() >= maxLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '_', r == '.', r == '-', r == ':':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// faceTag is the ExternalImageId of a face indexed from the photo of message
// messageID: the device id, then ":" and the message id, so that a
// redelivery of the same message recognises the face as its own.
func faceTag(deviceID, messageID string) string {
	dev := ExternalImageID(deviceID)
	if messageID == "" {
		return dev
	}
	const maxLen = 255
	if max := maxLen - 1 - len(messageID); len(dev) > max {
		dev = dev[:max]
	}
	return dev + ":" + ExternalImageID(messageID)
}

// float32To64 widens a similarity without float32 noise: 97.5 stays 97.5 and
// 99.99 does not become 99.98999786376953.
func float32To64(f float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return v
}
