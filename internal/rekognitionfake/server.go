package rekognitionfake

import "net/http/httptest"

// Server is an Emulator listening on a loopback port, for tests. Point an SDK
// client at it with rekognition.Options.BaseEndpoint = &srv.URL (or
// AWS_ENDPOINT_URL_REKOGNITION); the controls of the embedded Emulator script
// its answers.
type Server struct {
	*Emulator
	// URL is the base URL of the server, e.g. "http://127.0.0.1:40123".
	URL string

	ts *httptest.Server
}

// New starts a Server with no collections. Call Close when done (in tests:
// t.Cleanup(srv.Close)).
func New() *Server {
	e := NewEmulator()
	ts := httptest.NewServer(e.Handler())
	return &Server{Emulator: e, URL: ts.URL, ts: ts}
}

// Open starts a Server on OpenEmulator(path): its collections and faces are
// loaded from and saved to the file at path, so they outlive the process.
func Open(path string) (*Server, error) {
	e, err := OpenEmulator(path)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewServer(e.Handler())
	return &Server{Emulator: e, URL: ts.URL, ts: ts}, nil
}

// Close stops the server; in-flight requests are cut off, so later SDK calls
// fail with a connection error.
func (s *Server) Close() {
	s.ts.CloseClientConnections()
	s.ts.Close()
}
