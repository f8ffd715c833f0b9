package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadAPIStream(t *testing.T) {
	keys := "phone:" + goodSecret + ":ingest"
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": keys}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stream{Heartbeat: 15 * time.Second, ClientBuffer: 256, MaxClients: 10_000}); c.Stream != want {
		t.Errorf("defaults = %+v, want %+v", c.Stream, want)
	}

	c, err = LoadAPI(envMap(map[string]string{"API_KEYS": keys,
		"STREAM_HEARTBEAT": "30s", "STREAM_CLIENT_BUFFER": "64", "STREAM_MAX_CLIENTS": "500"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stream{Heartbeat: 30 * time.Second, ClientBuffer: 64, MaxClients: 500}); c.Stream != want {
		t.Errorf("values = %+v, want %+v", c.Stream, want)
	}

	for _, tc := range []struct{ name, value string }{
		{"STREAM_HEARTBEAT", "500ms"},
		{"STREAM_HEARTBEAT", "soon"},
		{"STREAM_HEARTBEAT", "2h"},
		{"STREAM_CLIENT_BUFFER", "0"},
		{"STREAM_CLIENT_BUFFER", "1000000"},
		{"STREAM_MAX_CLIENTS", "0"},
		{"STREAM_MAX_CLIENTS", "many"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := LoadAPI(envMap(map[string]string{"API_KEYS": keys, tc.name: tc.value}))
			if err == nil || !strings.Contains(err.Error(), tc.name+":") {
				t.Fatalf("err = %v, want one naming %s", err, tc.name)
			}
			if strings.Count(err.Error(), tc.name+":") != 1 {
				t.Errorf("%s named more than once: %v", tc.name, err)
			}
		})
	}
}

func TestStreamZeroMeansDefault(t *testing.T) {
	c := validAPIForStream()
	if err := c.Validate(); err != nil {
		t.Fatalf("a hand-built config without stream settings: %v", err)
	}
	if got := (Stream{}).WithDefaults(); got != (Stream{DefaultStreamHeartbeat, DefaultStreamClientBuffer, DefaultStreamMaxClients}) {
		t.Errorf("WithDefaults = %+v", got)
	}
	if got := (Stream{Heartbeat: time.Second, ClientBuffer: 4, MaxClients: 2}).WithDefaults(); got != (Stream{time.Second, 4, 2}) {
		t.Errorf("WithDefaults changed set values: %+v", got)
	}
	c.Stream = Stream{Heartbeat: -time.Second, ClientBuffer: -1, MaxClients: -1}
	err := c.Validate()
	for _, name := range []string{"STREAM_HEARTBEAT", "STREAM_CLIENT_BUFFER", "STREAM_MAX_CLIENTS"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate = %v, want it to name %s", err, name)
		}
	}
}

func validAPIForStream() API {
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": "phone:" + goodSecret + ":ingest"}))
	if err != nil {
		panic(err)
	}
	c.Stream = Stream{}
	return c
}
