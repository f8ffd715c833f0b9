// Package rekognitionfake is a local emulator of the subset of AWS Rekognition
// the worker uses. It is NOT face recognition: it never looks at pixels beyond
// checking that the bytes are a JPEG or PNG. "Faces" and "people" are decided by
// a deterministic rule on the SHA-256 digest of the image bytes, which tests (or
// a developer) control.
//
// It speaks Rekognition's real wire protocol (awsJson1_1: POST /, header
// X-Amz-Target: RekognitionService.<Operation>, JSON bodies with base64 image
// bytes, errors as a non-2xx status with __type, X-Amzn-ErrorType and message),
// so the official AWS SDK client talks to it unchanged when its endpoint is
// overridden (BaseEndpoint, or AWS_ENDPOINT_URL_REKOGNITION). It serves two
// purposes: the test server for the services package (New, an httptest server
// with controls to inject errors and latency and to count calls) and the
// emulator `make run` uses when no AWS configuration is present (Open, whose
// collections and faces are kept in a file so they survive restarts, as the
// dev stack's other state does; or NewEmulator and Handler, served by any
// http.Server).
//
// Operations: CreateCollection, DescribeCollection, SearchFacesByImage,
// IndexFaces and DetectFaces. Any other target answers
// UnknownOperationException.
//
// Face model (deterministic):
//   - Image validation as Rekognition does it for these operations: more than
//     5 MiB of bytes → ImageTooLargeException; bytes that are not a decodable
//     JPEG or PNG header → InvalidImageFormatException.
//   - Every valid image shows exactly one face, unless its digest was marked
//     with SetNoFace (no face at all) or SetLowQualityFace (a face too poor to
//     index when IndexFaces filters by quality).
//   - Face and image ids are random UUIDs, as Rekognition's are: an id is
//     never given to two faces, also across emulator instances and restarts.
//   - Identity: an image is its own person, unless SetSamePerson declared it the
//     same person as another image with a given similarity.
//   - SearchFacesByImage compares the image with every face in the collection:
//     a face indexed from identical bytes matches with similarity
//     ExactMatchSimilarity (99.99); a face of the same person matches with the
//     lower of the two images' declared similarities; other faces do not match.
//     Matches under FaceMatchThreshold (default 80) are dropped, the rest are
//     sorted by similarity and cut to MaxFaces. A faceless image answers
//     InvalidParameterException "There are no faces in the image. Should be at
//     least 1.", as Rekognition does.
//   - DetectFaces lists the image's one face (a low-quality one too, with a
//     low quality score), or none for an image marked with SetNoFace.
//   - IndexFaces always adds a new face (Rekognition does not deduplicate
//     either), unless the image has no face (empty FaceRecords) or a
//     low-quality face and QualityFilter is not NONE (empty FaceRecords, one
//     UnindexedFaces entry with reason LOW_FACE_QUALITY).
//
// Requests must carry a SigV4 Authorization header (any signature is accepted:
// the emulator does not verify it), so an unsigned client fails as it would
// against AWS.
package rekognitionfake

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// Operation names, as they appear after "RekognitionService." in X-Amz-Target.
const (
	OpCreateCollection   = "CreateCollection"
	OpDescribeCollection = "DescribeCollection"
	OpSearchFacesByImage = "SearchFacesByImage"
	OpIndexFaces         = "IndexFaces"
	OpDetectFaces        = "DetectFaces"
)

const (
	// ExactMatchSimilarity is the similarity reported for a face indexed from
	// byte-identical image bytes.
	ExactMatchSimilarity = 99.99
	// MaxImageBytes is Rekognition's limit on image bytes passed in a request.
	MaxImageBytes = 5 << 20
	// FaceModelVersion is the face model version the emulator reports.
	FaceModelVersion = "7.0"
	// Region and AccountID appear in the ARNs the emulator returns.
	Region    = "us-east-1"
	AccountID = rekognitionwire.AccountID
)

// Emulator holds the emulated Rekognition state and the controls tests use.
// It is safe for concurrent use.
type Emulator struct {
	mu          sync.Mutex
	collections rekognitionwire.Collections[face]
	noFace      map[digest]bool
	lowQuality  map[digest]bool
	samePerson  map[digest]alias
	faults      map[string][]Fault // by operation; consumed front first
	stuck       map[string]Fault   // by operation; answered until ClearFaults
	latency     map[string]time.Duration
	calls       map[string]int
	now         func() time.Time
	path        string // the state file; "" keeps the state in memory only
}

type digest [sha256.Size]byte

type alias struct {
	of         digest
	similarity float64
}

type collection = rekognitionwire.Collection[face]

type face struct {
	id, imageID, externalImageID string
	image                        digest
}

// IndexedFace describes one face stored in an emulated collection.
type IndexedFace struct {
	FaceID          string
	ImageID         string
	ExternalImageID string
}

// NewEmulator returns an emulator with no collections, to be served with Handler.
func NewEmulator() *Emulator {
	return &Emulator{
		collections: rekognitionwire.Collections[face]{},
		noFace:      map[digest]bool{},
		lowQuality:  map[digest]bool{},
		samePerson:  map[digest]alias{},
		faults:      map[string][]Fault{},
		stuck:       map[string]Fault{},
		latency:     map[string]time.Duration{},
		calls:       map[string]int{},
		now:         time.Now,
	}
}
