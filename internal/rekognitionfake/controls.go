package rekognitionfake

import (
	"crypto/sha256"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// The controls tests use to script the emulator's answers and to look at its
// state. They take effect on the next request.

// Fault is an error answer injected by FailNext.
type Fault struct {
	Status  int    // HTTP status; 0 means the status Rekognition uses for Code
	Code    string // e.g. "ThrottlingException"
	Message string // "" means a default message for Code
}

// defaultMessage is the message a Fault without one carries, as Rekognition
// words it.
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
		f.Status = awsjson.StatusOf(f.Code)
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
	out := make([]IndexedFace, 0, len(c.Faces))
	for _, f := range c.Faces {
		out = append(out, IndexedFace{FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID})
	}
	return out
}

// DeleteCollection removes collection id, as an operator deleting it by hand
// would; it reports whether it existed and is gone (an emulator from Open
// keeps it when the state file cannot be written).
func (e *Emulator) DeleteCollection(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	undo, aerr := e.collections.Delete(id)
	return aerr == nil && e.commit(undo) == nil
}

// Collections lists the collection ids, sorted.
func (e *Emulator) Collections() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.collections.IDs()
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
