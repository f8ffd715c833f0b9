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
// emulator `make run` uses when no AWS configuration is present (NewEmulator
// and Handler, served by any http.Server).
//
// Operations: CreateCollection, DescribeCollection, SearchFacesByImage and
// IndexFaces. Any other target answers UnknownOperationException.
//
// Face model (deterministic):
//   - Image validation as Rekognition does it for these operations: more than
//     5 MiB of bytes → ImageTooLargeException; bytes that are not a decodable
//     JPEG or PNG header → InvalidImageFormatException.
//   - Every valid image shows exactly one face, unless its digest was marked
//     with SetNoFace (no face at all) or SetLowQualityFace (a face too poor to
//     index when IndexFaces filters by quality).
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
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg" // register the decoders used for format validation
	_ "image/png"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Operation names, as they appear after "RekognitionService." in X-Amz-Target.
const (
	OpCreateCollection   = "CreateCollection"
	OpDescribeCollection = "DescribeCollection"
	OpSearchFacesByImage = "SearchFacesByImage"
	OpIndexFaces         = "IndexFaces"
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
	AccountID = "000000000000"

	targetPrefix   = "RekognitionService."
	contentType    = "application/x-amz-json-1.1"
	maxRequestBody = 8 << 20 // base64 of 5 MiB plus JSON framing
	noFaceMessage  = "There are no faces in the image. Should be at least 1."
)

// Fault is an error answer injected by FailNext.
type Fault struct {
	Status  int    // HTTP status; 0 means the status Rekognition uses for Code
	Code    string // e.g. "ThrottlingException"
	Message string // "" means a default message for Code
}

// statusOf is the HTTP status Rekognition answers each error code with.
var statusOf = map[string]int{
	"ThrottlingException":                    http.StatusBadRequest,
	"ProvisionedThroughputExceededException": http.StatusBadRequest,
	"LimitExceededException":                 http.StatusBadRequest,
	"InternalServerError":                    http.StatusInternalServerError,
	"ServiceUnavailableException":            http.StatusServiceUnavailable,
	"InvalidImageFormatException":            http.StatusBadRequest,
	"ImageTooLargeException":                 http.StatusBadRequest,
	"InvalidParameterException":              http.StatusBadRequest,
	"AccessDeniedException":                  http.StatusBadRequest,
	"ResourceNotFoundException":              http.StatusBadRequest,
	"ResourceAlreadyExistsException":         http.StatusBadRequest,
	"ValidationException":                    http.StatusBadRequest,
	"UnknownOperationException":              http.StatusBadRequest,
	"MissingAuthenticationTokenException":    http.StatusBadRequest,
	"SerializationException":                 http.StatusBadRequest,
}

var defaultMessage = map[string]string{
	"ThrottlingException":                    "Rate exceeded",
	"ProvisionedThroughputExceededException": "Provisioned rate exceeded",
	"InternalServerError":                    "Internal server error",
	"InvalidImageFormatException":            "Request has invalid image format",
	"ImageTooLargeException":                 "Image size is too large",
	"InvalidParameterException":              "Request has invalid parameters",
	"AccessDeniedException":                  "User is not authorized to perform this action",
	"ResourceNotFoundException":              "The requested resource was not found",
}

// Emulator holds the emulated Rekognition state and the controls tests use.
// It is safe for concurrent use.
type Emulator struct {
	mu          sync.Mutex
	collections map[string]*collection
	noFace      map[digest]bool
	lowQuality  map[digest]bool
	samePerson  map[digest]alias
	faults      map[string][]Fault // by operation; consumed front first
	stuck       map[string]Fault   // by operation; answered until ClearFaults
	latency     map[string]time.Duration
	calls       map[string]int
	seq         uint64
	requests    atomic.Uint64
	now         func() time.Time
}

type digest [sha256.Size]byte

type alias struct {
	of         digest
	similarity float64
}

type collection struct {
	id      string
	created time.Time
	faces   []face
}

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
		collections: map[string]*collection{},
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

// SetNoFace declares that img shows no face.
func (e *Emulator) SetNoFace(img []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noFace[sha256.Sum256(img)] = true
}

// SetLowQualityFace declares that img shows a face too poor for IndexFaces to
// index unless QualityFilter is NONE. SearchFacesByImage still finds it.
func (e *Emulator) SetLowQualityFace(img []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lowQuality[sha256.Sum256(img)] = true
}

// SetSamePerson declares that img shows the same person as ref, with the given
// similarity (0–100) to any face of that person. Chains are followed, so
// several images can be declared the same person as one reference image.
func (e *Emulator) SetSamePerson(img, ref []byte, similarity float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.samePerson[sha256.Sum256(img)] = alias{of: sha256.Sum256(ref), similarity: similarity}
}

// FailNext makes the next n calls of op (one of the Op constants) answer with
// the error f instead of being processed. Faults queue up in call order.
// n < 0 makes every call of op fail until ClearFaults.
func (e *Emulator) FailNext(op string, n int, f Fault) {
	if f.Status == 0 {
		f.Status = statusOf[f.Code]
		if f.Status == 0 {
			f.Status = http.StatusBadRequest
		}
	}
	if f.Message == "" {
		f.Message = defaultMessage[f.Code]
		if f.Message == "" {
			f.Message = f.Code
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if n < 0 {
		e.stuck[op] = f
		return
	}
	for range n {
		e.faults[op] = append(e.faults[op], f)
	}
}

// ClearFaults forgets every injected fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.faults)
	clear(e.stuck)
}

// SetLatency delays every answer to op by d (0 removes the delay). A client
// that gives up earlier gets no answer, as with a slow network.
func (e *Emulator) SetLatency(op string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latency[op] = d
}

// Calls reports how many HTTP requests for op arrived, failed ones included.
// Each SDK retry attempt is one request.
func (e *Emulator) Calls(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[op]
}

// ResetCalls sets every call count back to zero.
func (e *Emulator) ResetCalls() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.calls)
}

// Faces lists the faces stored in collection id, in indexing order.
func (e *Emulator) Faces(id string) []IndexedFace {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.collections[id]
	if c == nil {
		return nil
	}
	out := make([]IndexedFace, 0, len(c.faces))
	for _, f := range c.faces {
		out = append(out, IndexedFace{FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID})
	}
	return out
}

// DeleteCollection removes collection id, as an operator deleting it by hand
// would; it reports whether it existed.
func (e *Emulator) DeleteCollection(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.collections[id]
	delete(e.collections, id)
	return ok
}

// Collections lists the collection ids, sorted.
func (e *Emulator) Collections() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.collections))
}

// Handler returns the HTTP handler speaking the Rekognition wire protocol.
func (e *Emulator) Handler() http.Handler {
	return http.HandlerFunc(e.serve)
}

// apiError is an error answer in the awsJson1_1 shape.
type apiError struct {
	status        int
	code, message string
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{status: statusOf[code], code: code, message: fmt.Sprintf(format, args...)}
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		e.writeError(w, &apiError{status: http.StatusNotFound, code: "UnknownOperationException", message: "only POST / is served"})
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !ok || op == "" {
		e.writeError(w, errorf("UnknownOperationException", "missing or foreign X-Amz-Target"))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		e.writeError(w, errorf("MissingAuthenticationTokenException", "Missing Authentication Token"))
		return
	}

	// Read the whole body first: only then does net/http notice a client
	// that hangs up during the delay below and cancel r.Context().
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return // client went away
	}

	fault, delay := e.begin(op)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if fault != nil {
		e.writeError(w, &apiError{status: fault.Status, code: fault.Code, message: fault.Message})
		return
	}
	if len(body) > maxRequestBody {
		e.writeError(w, errorf("ImageTooLargeException", "Request body too large"))
		return
	}

	var (
		out  any
		aerr *apiError
	)
	switch op {
	case OpCreateCollection:
		out, aerr = e.createCollection(body)
	case OpDescribeCollection:
		out, aerr = e.describeCollection(body)
	case OpSearchFacesByImage:
		out, aerr = e.searchFacesByImage(body)
	case OpIndexFaces:
		out, aerr = e.indexFaces(body)
	default:
		aerr = errorf("UnknownOperationException", "operation %s is not emulated", op)
	}
	if aerr != nil {
		e.writeError(w, aerr)
		return
	}
	e.writeJSON(w, http.StatusOK, out)
}

// begin counts the call and returns the fault and latency that apply to it.
func (e *Emulator) begin(op string) (*Fault, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls[op]++
	delay := e.latency[op]
	if f, ok := e.stuck[op]; ok {
		return &f, delay
	}
	if q := e.faults[op]; len(q) > 0 {
		f := q[0]
		e.faults[op] = q[1:]
		return &f, delay
	}
	return nil, delay
}

func (e *Emulator) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-RequestId", uuidFrom(fmt.Sprintf("request-%d", e.requests.Add(1))))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (e *Emulator) writeError(w http.ResponseWriter, ae *apiError) {
	status := ae.status
	if status == 0 {
		status = http.StatusBadRequest
	}
	// Real services send the code in the header with a namespace suffix after
	// a colon; the SDK strips it. The body carries the bare code.
	w.Header().Set("X-Amzn-ErrorType", ae.code+":http://internal.amazon.com/coral/com.amazonaws.rekognition/")
	e.writeJSON(w, status, map[string]string{"__type": ae.code, "message": ae.message})
}

// uuidFrom formats a digest of s as a version-4-shaped UUID, so ids are
// deterministic for a given emulator history and look like Rekognition's.
func uuidFrom(s string) string {
	b := sha256.Sum256([]byte(s))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ----- operations -----------------------------------------------------------

var (
	collectionIDPattern    = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,255}$`)
	externalImageIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-:]{1,255}$`)
)

type imageInput struct {
	Bytes    []byte `json:"Bytes"`
	S3Object any    `json:"S3Object"`
}

type boundingBox struct {
	Width, Height, Left, Top float64
}

var wholeFace = boundingBox{Width: 0.5, Height: 0.6, Left: 0.25, Top: 0.15}

type faceJSON struct {
	FaceId                 string
	BoundingBox            boundingBox
	ImageId                string
	ExternalImageId        string `json:",omitempty"`
	Confidence             float64
	IndexFacesModelVersion string
}

func decode(body []byte, v any) *apiError {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return errorf("SerializationException", "malformed request body")
	}
	return nil
}

func checkCollectionID(id string) *apiError {
	if !collectionIDPattern.MatchString(id) {
		return errorf("ValidationException", "1 validation error detected: Value '%s' at 'collectionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+", id)
	}
	return nil
}

// checkImage validates the image as Rekognition does and returns its digest.
func checkImage(img *imageInput) (digest, *apiError) {
	if img == nil || (img.Bytes == nil && img.S3Object == nil) {
		return digest{}, errorf("InvalidParameterException", "Request has invalid parameters")
	}
	if img.S3Object != nil {
		return digest{}, errorf("InvalidS3ObjectException", "S3 objects are not emulated")
	}
	if len(img.Bytes) > MaxImageBytes {
		return digest{}, errorf("ImageTooLargeException", "Image size is too large")
	}
	if _, _, err := image.DecodeConfig(bytes.NewReader(img.Bytes)); err != nil {
		return digest{}, errorf("InvalidImageFormatException", "Request has invalid image format")
	}
	return sha256.Sum256(img.Bytes), nil
}

func (e *Emulator) arn(id string) string {
	return "aws:rekognition:" + Region + ":" + AccountID + ":collection/" + id
}

func (e *Emulator) createCollection(body []byte) (any, *apiError) {
	var in struct{ CollectionId string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.collections[in.CollectionId]; ok {
		return nil, errorf("ResourceAlreadyExistsException", "The collection id: %s already exists", in.CollectionId)
	}
	e.collections[in.CollectionId] = &collection{id: in.CollectionId, created: e.now()}
	return map[string]any{
		"CollectionArn":    e.arn(in.CollectionId),
		"FaceModelVersion": FaceModelVersion,
		"StatusCode":       200,
	}, nil
}

func (e *Emulator) describeCollection(body []byte) (any, *apiError) {
	var in struct{ CollectionId string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	return map[string]any{
		"CollectionARN":     e.arn(c.id),
		"CreationTimestamp": float64(c.created.UnixMilli()) / 1000,
		"FaceCount":         len(c.faces),
		"FaceModelVersion":  FaceModelVersion,
		"UserCount":         0,
	}, nil
}

func notFound(id string) *apiError {
	return errorf("ResourceNotFoundException", "The collection id: %s does not exist", id)
}

// person resolves d to the digest identifying its person and d's declared
// similarity to that person.
func (e *Emulator) person(d digest) (digest, float64) {
	sim := ExactMatchSimilarity
	seen := map[digest]bool{}
	for !seen[d] {
		seen[d] = true
		a, ok := e.samePerson[d]
		if !ok {
			break
		}
		sim = min(sim, a.similarity)
		d = a.of
	}
	return d, sim
}

func (e *Emulator) searchFacesByImage(body []byte) (any, *apiError) {
	var in struct {
		CollectionId       string
		Image              *imageInput
		FaceMatchThreshold *float64
		MaxFaces           *int
		QualityFilter      string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}
	threshold := 80.0
	if in.FaceMatchThreshold != nil {
		threshold = *in.FaceMatchThreshold
	}
	maxFaces := 4096
	if in.MaxFaces != nil {
		maxFaces = *in.MaxFaces
	}
	if threshold < 0 || threshold > 100 || maxFaces < 1 || maxFaces > 4096 {
		return nil, errorf("InvalidParameterException", "Request has invalid parameters")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	filtered := in.QualityFilter != "" && in.QualityFilter != "NONE"
	if e.noFace[d] || (filtered && e.lowQuality[d]) {
		return nil, errorf("InvalidParameterException", noFaceMessage)
	}

	type match struct {
		Face       faceJSON
		Similarity float64
	}
	who, querySim := e.person(d)
	matches := []match{}
	for _, f := range c.faces {
		var sim float64
		if f.image == d {
			sim = ExactMatchSimilarity
		} else if p, faceSim := e.person(f.image); p == who {
			sim = min(querySim, faceSim)
		} else {
			continue
		}
		if sim < threshold {
			continue
		}
		matches = append(matches, match{Face: e.faceJSON(f), Similarity: sim})
	}
	slices.SortStableFunc(matches, func(a, b match) int {
		switch {
		case a.Similarity > b.Similarity:
			return -1
		case a.Similarity < b.Similarity:
			return 1
		}
		return 0
	})
	if len(matches) > maxFaces {
		matches = matches[:maxFaces]
	}
	return map[string]any{
		"FaceMatches":             matches,
		"FaceModelVersion":        FaceModelVersion,
		"SearchedFaceBoundingBox": wholeFace,
		"SearchedFaceConfidence":  99.98,
	}, nil
}

func (e *Emulator) faceJSON(f face) faceJSON {
	return faceJSON{
		FaceId:                 f.id,
		BoundingBox:            wholeFace,
		ImageId:                f.imageID,
		ExternalImageId:        f.externalImageID,
		Confidence:             99.98,
		IndexFacesModelVersion: FaceModelVersion,
	}
}

func (e *Emulator) indexFaces(body []byte) (any, *apiError) {
	var in struct {
		CollectionId    string
		Image           *imageInput
		ExternalImageId *string
		MaxFaces        *int
		QualityFilter   string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	if in.ExternalImageId != nil && !externalImageIDPattern.MatchString(*in.ExternalImageId) {
		return nil, errorf("ValidationException", "1 validation error detected: Value '%s' at 'externalImageId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+", *in.ExternalImageId)
	}
	if in.MaxFaces != nil && *in.MaxFaces < 1 {
		return nil, errorf("InvalidParameterException", "Request has invalid parameters")
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	out := map[string]any{
		"FaceModelVersion": FaceModelVersion,
		"FaceRecords":      []any{},
		"UnindexedFaces":   []any{},
	}
	filtered := in.QualityFilter != "NONE" // absent means AUTO
	switch {
	case e.noFace[d]:
		return out, nil
	case filtered && e.lowQuality[d]:
		out["UnindexedFaces"] = []any{map[string]any{
			"Reasons":    []string{"LOW_FACE_QUALITY"},
			"FaceDetail": map[string]any{"BoundingBox": wholeFace, "Confidence": 61.5},
		}}
		return out, nil
	}
	e.seq++
	f := face{
		id:      uuidFrom(fmt.Sprintf("face-%s-%d", c.id, e.seq)),
		imageID: uuidFrom(fmt.Sprintf("image-%x", d)),
		image:   d,
	}
	if in.ExternalImageId != nil {
		f.externalImageID = *in.ExternalImageId
	}
	c.faces = append(c.faces, f)
	out["FaceRecords"] = []any{map[string]any{
		"Face":       e.faceJSON(f),
		"FaceDetail": map[string]any{"BoundingBox": wholeFace, "Confidence": 99.98},
	}}
	return out, nil
}
