package rekognitionlocal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// The awsJson1_1 wire protocol: request framing (POST /, X-Amz-Target, a
// SigV4 Authorization header, JSON body), response framing and error
// encoding. It follows internal/rekognitionfake/protocol.go, which the unit
// tests' byte-identity double keeps; this copy drops the fault injection
// and adds the region of the request's credential scope.

const (
	targetPrefix   = "RekognitionService."
	contentType    = "application/x-amz-json-1.1"
	maxRequestBody = 8 << 20 // base64 of 5 MiB plus JSON framing
	defaultRegion  = "us-east-1"
)

// statusOf is the HTTP status Rekognition answers each error code with.
var statusOf = map[string]int{
	"InternalServerError":                 http.StatusInternalServerError,
	"ThrottlingException":                 http.StatusBadRequest,
	"InvalidImageFormatException":         http.StatusBadRequest,
	"ImageTooLargeException":              http.StatusBadRequest,
	"InvalidParameterException":           http.StatusBadRequest,
	"InvalidPaginationTokenException":     http.StatusBadRequest,
	"InvalidS3ObjectException":            http.StatusBadRequest,
	"ResourceNotFoundException":           http.StatusBadRequest,
	"ResourceAlreadyExistsException":      http.StatusBadRequest,
	"ValidationException":                 http.StatusBadRequest,
	"UnknownOperationException":           http.StatusBadRequest,
	"MissingAuthenticationTokenException": http.StatusBadRequest,
	"SerializationException":              http.StatusBadRequest,
}

// apiError is an error answer in the awsJson1_1 shape.
type apiError struct {
	code, message string
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

func (e *apiError) status() int {
	if s, ok := statusOf[e.code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// call is one request: its operation's input and the caller's region.
type call struct {
	body   []byte
	region string
}

// operation answers one Rekognition operation.
type operation func(r *http.Request, c call) (any, *apiError)

// Handler returns the HTTP handler speaking the Rekognition wire protocol.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeError(w, &apiError{code: "UnknownOperationException", message: "only POST / is served"})
		return
	}
	name, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	op := s.ops[name]
	if !ok || op == nil {
		writeError(w, errorf("UnknownOperationException", "operation %q is not implemented", name))
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		writeError(w, errorf("MissingAuthenticationTokenException", "Missing Authentication Token"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return // the client went away
	}
	if len(body) > maxRequestBody {
		writeError(w, errorf("ImageTooLargeException", "Image size is too large"))
		return
	}
	out, aerr := op(r, call{body: body, region: regionOf(auth)})
	if aerr != nil {
		if aerr.code == "InternalServerError" {
			s.log.Error("rekognition-local request failed", "operation", name, "error", aerr.message)
		}
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// credentialScope finds the region in "Credential=AKID/date/region/service/aws4_request".
var credentialScope = regexp.MustCompile(`Credential=[^/,]+/\d{8}/([a-z0-9-]+)/`)

// regionOf is the region the client signed for, which goes into the ARNs
// answered, as AWS's would; us-east-1 when the header does not say.
func regionOf(auth string) string {
	if m := credentialScope.FindStringSubmatch(auth); m != nil {
		return m[1]
	}
	return defaultRegion
}

// decode unmarshals a JSON request body; a malformed one answers
// SerializationException, as Rekognition does. Unknown fields are ignored,
// so a newer SDK's additions do not break older servers.
func decode(body []byte, v any) *apiError {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return errorf("SerializationException", "malformed request body")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"InternalServerError","message":"answer not encodable"}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-RequestId", uuid.NewString())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, ae *apiError) {
	// Real services send the code in the header with a namespace suffix after
	// a colon; the SDK strips it. The body carries the bare code.
	w.Header().Set("X-Amzn-ErrorType", ae.code+":http://internal.amazon.com/coral/com.amazonaws.rekognition/")
	writeJSON(w, ae.status(), map[string]string{"__type": ae.code, "message": ae.message})
}
