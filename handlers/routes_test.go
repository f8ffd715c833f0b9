package handlers

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The ingest routes resolved without the mux (hotRoutes) are exactly what
// the mux, with every route of the API registered, resolves to them; any
// other request is left to the mux.
func TestHotRoutesAgreeWithTheMux(t *testing.T) {
	called := ""
	handler := func(name string) http.HandlerFunc {
		return func(http.ResponseWriter, *http.Request) { called = name }
	}
	hot := hotRoutes{gyroscope: handler(RouteGyroscope), gps: handler(RouteGPS), photo: handler(RoutePhoto),
		batch: handler(RouteBatch)}
	mux := http.NewServeMux()
	for _, route := range []string{RouteGyroscope, RouteGPS, RoutePhoto, RouteBatch} {
		mux.HandleFunc(route, handler(route))
	}
	readRoutes(mux, Backends{}, 1)
	docs, err := newDocs()
	if err != nil {
		t.Fatal(err)
	}
	docs.register(mux)
	mux.HandleFunc("/", unmatched(mux))

	for _, tc := range []struct{ method, target string }{
		{"POST", "/telemetry/gps"}, {"POST", "/telemetry/gyroscope"}, {"POST", "/telemetry/photo"},
		{"POST", "/telemetry/batch"},
		{"GET", "/telemetry/gps"}, {"PUT", "/telemetry/gps"}, {"OPTIONS", "/telemetry/gps"},
		{"POST", "/telemetry/gps/"}, {"POST", "/telemetry//gps"}, {"POST", "/telemetry/./gps"},
		{"POST", "/telemetry/%67ps"}, {"POST", "/telemetry/gps?x=1"}, {"POST", "/Telemetry/gps"},
		{"POST", "/telemetry/gps%2F"}, {"POST", "/telemetry"}, {"POST", "/"}, {"POST", "/devices"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		_, want := mux.Handler(r)
		pattern, h := hot.match(r)
		if pattern == "" {
			if h != nil {
				t.Errorf("%s %s: a handler without a pattern", tc.method, tc.target)
			}
			continue
		}
		if pattern != want {
			t.Errorf("%s %s: hot route %q, the mux %q", tc.method, tc.target, pattern, want)
		}
		called = ""
		h(nil, r)
		if called != want {
			t.Errorf("%s %s: served by %q, the mux serves %q", tc.method, tc.target, called, want)
		}
	}
	// Each ingest route is taken on its exact path.
	for _, route := range []string{RouteGyroscope, RouteGPS, RoutePhoto, RouteBatch} {
		r := httptest.NewRequest(http.MethodPost, route[len("POST "):], nil)
		if pattern, _ := hot.match(r); pattern != route {
			t.Errorf("%s: hot route %q", route, pattern)
		}
	}
}
