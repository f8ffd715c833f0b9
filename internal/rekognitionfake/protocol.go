package rekognitionfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The awsJson1_1 wire protocol: request framing (POST /, X-Amz-Target, SigV4
// header, JSON body), response framing and error encoding. The operations
// themselves are in operations.go.

const (
	targetPrefix   = "RekognitionService."
	contentType    = "application/x-amz-json-1.1"
	maxRequestBody = 8 << 20 // base64 of 5 MiB plus JSON framing
)

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

	out, aerr := e.operate(op, body)
	if aerr != nil {
		e.writeError(w, aerr)
		return
	}
	e.writeJSON(w, http.StatusOK, out)
}

// decode unmarshals a JSON request body; a malformed one answers
// SerializationException, as Rekognition does.
func decode(body []byte, v any) *apiError {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return errorf("SerializationException", "malformed request body")
	}
	return nil
}

func (e *Emulator) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-RequestId", uuid.NewString())
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
