package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// authenticate checks X-API-Key against the configured keys and the scope
// the method needs: GET, HEAD and OPTIONS read, everything else ingests.
//
// The presented key is hashed and compared with every key's digest in
// constant time, without stopping at a match, so neither the secret nor its
// position in API_KEYS leaks through timing.
func authenticate(keys []config.APIKey, m *metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isPublic(infoFrom(r.Context()).route) { // the API's documentation
				next.ServeHTTP(w, r)
				return
			}
			presented := headerValue(r.Header, "X-Api-Key") // X-API-Key, canonical
			if presented == "" {
				m.authFailures.WithLabelValues("missing").Inc()
				writeError(w, r, fieldProblem(ierr.Unauthenticated, "", "Send an API key in the X-API-Key header."))
				return
			}
			sum := sha256.Sum256([]byte(presented))
			var found *config.APIKey
			for i := range keys {
				if subtle.ConstantTimeCompare(sum[:], keys[i].Digest[:]) == 1 {
					found = &keys[i]
				}
			}
			if found == nil {
				m.authFailures.WithLabelValues("invalid").Inc()
				writeError(w, r, fieldProblem(ierr.Unauthenticated, "", "The API key is not valid."))
				return
			}
			infoFrom(r.Context()).keyName = found.Name
			scope := config.ScopeIngest
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				scope = config.ScopeRead
			}
			if !found.Allows(scope) {
				m.authFailures.WithLabelValues("forbidden").Inc()
				writeError(w, r, fieldProblem(ierr.Forbidden, "", "The API key "+found.Name+" lacks the "+string(scope)+" scope."))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
