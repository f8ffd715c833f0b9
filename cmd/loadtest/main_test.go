package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLoopbackURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080":   true,
		"http://[::1]:8080":       true,
		"https://localhost:8443":  true,
		"http://127.8.9.10":       true,
		"http://10.0.0.1:8080":    false,
		"http://example.com":      false,
		"http://127.0.0.1.nip.io": false,
		"ftp://127.0.0.1":         false,
		"127.0.0.1:8080":          false,
	} {
		if _, err := loopbackURL(raw); (err == nil) != ok {
			t.Errorf("loopbackURL(%q) err = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestParseBounds(t *testing.T) {
	for _, args := range [][]string{
		{"-key", "k", "-n", "0"},
		{"-key", "k", "-n", "2000000"},
		{"-key", "k", "-c", "5000"},
		{"-key", "k", "-duration", "1h"},
		{"-key", "k", "-type", "temperature"},
		{"-key", "k", "-url", "http://192.0.2.1"},
	} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
}

func TestRunReports(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if r.Header.Get("X-API-Key") != "k" || json.NewDecoder(r.Body).Decode(&v) != nil || v["device_id"] == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if hits.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	for _, typ := range []string{"gps", "gyroscope", "photo"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"-url", srv.URL, "-key", "k", "-n", "50", "-c", "4", "-type", typ}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "completed   50 requests") || !strings.Contains(out.String(), "202: 45") || !strings.Contains(out.String(), "429: 5") {
			t.Errorf("%s report:\n%s", typ, out.String())
		}
		hits.Store(0)
	}
}
