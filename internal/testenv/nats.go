// Package testenv gives tests the real dependencies the system runs on: an
// embedded NATS server with JetStream, and a fresh PostgreSQL database per
// call. It is imported only from _test.go files.
//
// Packages whose tests call Postgres should run them through Main, which
// stops the test binary's PostgreSQL cluster after the tests:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// MaxPayload is the NATS max_payload the project ships with: the largest
// message the streams take, a 5 MiB photo base64-encoded inside JSON.
const MaxPayload = messaging.MaxMessageBytes

// NATSServer is an embedded NATS server with JetStream, listening on
// 127.0.0.1. It can be stopped and restarted on the same port and store
// directory, for outage tests; URL stays valid across restarts.
type NATSServer struct {
	// URL is the client URL, e.g. nats://127.0.0.1:41234.
	URL string

	mu   sync.Mutex
	opts server.Options // with the port fixed after the first start
	srv  *server.Server // nil while stopped
}

// NATS starts a NATS server with JetStream for the test, stored under a
// t.TempDir, and shuts it down in t.Cleanup.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	return NATSWith(t, nil)
}

// NATSWith is NATS with a hook to adjust the server options (e.g. a smaller
// MaxPayload) before the first start.
func NATSWith(t testing.TB, configure func(*server.Options)) *NATSServer {
	t.Helper()
	opts := baseOptions(t)
	if configure != nil {
		configure(&opts)
	}
	ns := &NATSServer{opts: opts}
	ns.start(t)
	addr := ns.srv.Addr().(*net.TCPAddr)
	ns.opts.Port = addr.Port
	ns.URL = "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
	t.Cleanup(ns.Stop)
	return ns
}

// baseOptions are the options of every test server: JetStream stored
// under a t.TempDir, on a random port of 127.0.0.1, with the project's
// max_payload.
func baseOptions(t testing.TB) server.Options {
	return server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		MaxPayload: MaxPayload,
		NoLog:      true,
		NoSigs:     true,
		// A server with no traffic should not be told apart from a dead one
		// by the clients' pings during a long test.
		PingInterval: 2 * time.Minute,
	}
}

// Server is the running server, or nil while stopped.
func (ns *NATSServer) Server() *server.Server {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.srv
}

// Stop shuts the server down and waits until it has; clients see the
// connection drop. Stopping a stopped server does nothing.
func (ns *NATSServer) Stop() {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.srv == nil {
		return
	}
	ns.srv.Shutdown()
	ns.srv.WaitForShutdown()
	ns.srv = nil
}

// Restart stops the server if it runs and starts a new one on the same port
// with the same JetStream store, so streams and unacknowledged messages
// survive and clients reconnect to the same URL.
func (ns *NATSServer) Restart(t testing.TB) {
	t.Helper()
	ns.Stop()
	ns.start(t)
}

func (ns *NATSServer) start(t testing.TB) {
	t.Helper()
	ns.mu.Lock()
	defer ns.mu.Unlock()
	opts := ns.opts // NewServer keeps and adjusts its *Options
	srv, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("testenv: NATS server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("testenv: NATS server on %s:%d not ready within 10 s", opts.Host, opts.Port)
	}
	ns.srv = srv
}

// JetStream connects to url the way the binaries do (messaging.Connect) and
// returns the connection and its JetStream context, closed in t.Cleanup.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := messaging.Connect(context.Background(), url, "test-"+t.Name(), 5*time.Second)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return nc, js
}
