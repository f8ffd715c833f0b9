package rekognitionfake

import (
	"net/http"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The awsJson1_1 wire protocol: request framing (POST /, X-Amz-Target, SigV4
// header, JSON body), response framing and error encoding. The operations
// themselves are in operations.go.

// The emulator answers in json.Encoder's form, a newline after the JSON.
const wire = awsjson.Line

type apiError = awsjson.Error

var errorf = awsjson.Errorf

// Handler returns the HTTP handler speaking the Rekognition wire protocol.
func (e *Emulator) Handler() http.Handler {
	return http.HandlerFunc(e.serve)
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		e.writeError(w, &apiError{Status: http.StatusNotFound, Code: "UnknownOperationException", Message: "only POST / is served"})
		return
	}
	op, ok := rekognitionwire.Operation(r)
	if !ok || op == "" {
		e.writeError(w, errorf("UnknownOperationException", "missing or foreign X-Amz-Target"))
		return
	}
	if aerr := rekognitionwire.CheckSigned(r); aerr != nil {
		e.writeError(w, aerr)
		return
	}

	// Read the whole body first: only then does net/http notice a client
	// that hangs up during the delay below and cancel r.Context().
	body, err := rekognitionwire.ReadBody(r)
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
		e.writeError(w, &apiError{Status: fault.Status, Code: fault.Code, Message: fault.Message})
		return
	}
	if len(body) > awsjson.MaxRequestBody {
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

var decode = awsjson.Decode

func (e *Emulator) writeJSON(w http.ResponseWriter, status int, v any) { wire.WriteJSON(w, status, v) }

func (e *Emulator) writeError(w http.ResponseWriter, ae *apiError) { wire.WriteError(w, ae) }
