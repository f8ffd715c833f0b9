package rekognitionlocal

import (
	"net/http"
	"regexp"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The awsJson1_1 wire protocol: request framing (POST /, X-Amz-Target, a
// SigV4 Authorization header, JSON body), response framing and error
// encoding. What it shares with the test double (internal/rekognitionfake)
// is in internal/awsjson and internal/rekognitionwire; unlike the double it
// injects no faults, and it answers in the region of the request's
// credential scope.

const defaultRegion = "us-east-1"

// The server answers in json.Marshal's form.
const wire = awsjson.Compact

type apiError = awsjson.Error

var errorf = awsjson.Errorf

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
		writeError(w, errorf("UnknownOperationException", "only POST / is served"))
		return
	}
	name, ok := rekognitionwire.Operation(r)
	op := s.ops[name]
	if !ok || op == nil {
		writeError(w, errorf("UnknownOperationException", "operation %q is not implemented", name))
		return
	}
	if aerr := rekognitionwire.CheckSigned(r); aerr != nil {
		writeError(w, aerr)
		return
	}
	body, err := rekognitionwire.ReadBody(r)
	if err != nil {
		return // the client went away
	}
	if len(body) > awsjson.MaxRequestBody {
		writeError(w, errorf("ImageTooLargeException", "Image size is too large"))
		return
	}
	out, aerr := op(r, call{body: body, region: regionOf(r.Header.Get("Authorization"))})
	if aerr != nil {
		if aerr.Code == "InternalServerError" {
			s.log.Error("rekognition-local request failed", "operation", name, "error", aerr.Message)
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

var decode = awsjson.Decode

func writeJSON(w http.ResponseWriter, status int, v any) { wire.WriteJSON(w, status, v) }

func writeError(w http.ResponseWriter, ae *apiError) { wire.WriteError(w, ae) }
