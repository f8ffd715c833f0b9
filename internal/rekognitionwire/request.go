package rekognitionwire

import (
	"io"
	"net/http"
	"strings"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// targetPrefix starts the X-Amz-Target header of every Rekognition request.
const targetPrefix = "RekognitionService."

// Operation is the operation r names in its X-Amz-Target header; ok is
// false when the header is missing or names another service, and op is
// then the header as it is.
func Operation(r *http.Request) (op string, ok bool) {
	return strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
}

// CheckSigned answers MissingAuthenticationTokenException, as AWS does,
// for a request without a SigV4 Authorization header. The signature itself
// is not checked: the servers take any credentials.
func CheckSigned(r *http.Request) *awsjson.Error {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		return awsjson.Errorf("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	return nil
}

// ReadBody reads r's body, up to one byte more than awsjson.MaxRequestBody
// so that the caller can refuse a longer one (each server words that its
// own way). An error means the client went away.
func ReadBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, awsjson.MaxRequestBody+1))
}
