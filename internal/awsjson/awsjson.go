// Package awsjson is what the Rekognition emulators share of AWS's
// awsJson1_1 wire protocol: response framing, the error answer and the
// HTTP status of each error code, request body decoding, and the atomic
// replacement of a JSON state file.
package awsjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/uuid"
)

const (
	// ContentType is the media type of awsJson1_1 requests and answers.
	ContentType = "application/x-amz-json-1.1"
	// MaxRequestBody bounds a request body: base64 of 5 MiB plus JSON framing.
	MaxRequestBody = 8 << 20
)

// statusOf is the HTTP status Rekognition answers each error code with;
// codes not listed answer 400.
var statusOf = map[string]int{
	"InternalServerError":         http.StatusInternalServerError,
	"ServiceUnavailableException": http.StatusServiceUnavailable,
}

// StatusOf is the HTTP status an error code is answered with.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// Error is an error answer in the awsJson1_1 shape. A zero Status answers 400.
type Error struct {
	Status        int
	Code, Message string
}

// Errorf is the error answering code, with the status Rekognition uses for it.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Status: StatusOf(code), Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Decode unmarshals a JSON request body; a malformed one answers
// SerializationException, as Rekognition does. Unknown fields are ignored.
func Decode(body []byte, v any) *Error {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		return Errorf("SerializationException", "malformed request body")
	}
	return nil
}

// Encoding chooses how an answer's JSON is written.
type Encoding int

const (
	// Compact is json.Marshal's output.
	Compact Encoding = iota
	// Line is json.Encoder's output: Compact and a newline.
	Line
)

// WriteJSON answers status with v as the body.
func (enc Encoding) WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		if enc == Line {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"InternalServerError","message":"answer not encodable"}`)
	} else if enc == Line {
		b = append(b, '\n')
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Amzn-RequestId", uuid.NewString())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteError answers ae.
func (enc Encoding) WriteError(w http.ResponseWriter, ae *Error) {
	status := ae.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	// Real services send the code in the header with a namespace suffix after
	// a colon; the SDK strips it. The body carries the bare code.
	w.Header().Set("X-Amzn-ErrorType", ae.Code+":http://internal.amazon.com/coral/com.amazonaws.rekognition/")
	enc.WriteJSON(w, status, map[string]string{"__type": ae.Code, "message": ae.Message})
}

// WriteFileAtomic replaces path with b: written and synced to a temporary
// file in the same directory, then renamed over path.
func WriteFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename survives a crash once the directory is synced; not every
	// platform can sync a directory, and the data is already safe.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
