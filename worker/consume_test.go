package worker_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// A NATS that stops answering for longer than two heartbeats (a consumer
// leader election, a stalled server or network) makes the pull iterators
// report jetstream.ErrNoHeartbeat. The worker subscribes again and goes on
// consuming, without a restart.
func TestMissedHeartbeatsDoNotStopTheWorker(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	proxy := newFreezer(t, strings.TrimPrefix(e.nats.URL, "nats://"))
	e.cfg.NATSURL = "nats://" + proxy.addr()
	const expiry = 2 * time.Second // heartbeats every second, missed after two
	stop := e.start(worker.Options{PullExpiry: expiry})

	img := readFixture(t, "grace_hopper.jpg")
	publish := func(v float64) {
		e.publish(models.TypeGPS, gpsReading(v, v))
		e.publish(models.TypeGyroscope, gyroReading(v, v, v))
		e.publish(models.TypePhoto, photoReading(img))
	}
	stored := func() int {
		return e.count(`SELECT (SELECT count(*) FROM gps) + (SELECT count(*) FROM gyroscope) + (SELECT count(*) FROM photo)`)
	}
	publish(1)
	e.waitFor(10*time.Second, "readings before the freeze", func() bool { return stored() == 3 })

	proxy.freeze()
	const gap = 2*expiry + time.Second // twice the missed-heartbeat time
	time.Sleep(gap / 2)
	publish(2) // accepted while the worker hears nothing
	time.Sleep(gap / 2)
	proxy.thaw()

	publish(3)
	e.waitFor(15*time.Second, "every reading after the freeze", func() bool { return stored() == 9 })
	for _, typ := range []models.Type{models.TypeGPS, models.TypeGyroscope} {
		if n := e.metric(`worker_consumer_restarts_total{type="` + string(typ) + `"}`); n < 1 {
			t.Errorf("%s subscription restarts = %v, want at least 1", typ, n)
		}
	}
	if !strings.Contains(e.logs.String(), "no heartbeat") || !strings.Contains(e.logs.String(), "subscribing again") {
		t.Error("the missed heartbeats and the new subscription were not logged")
	}
	t.Logf("NATS silent for %s (heartbeats every %s): worker went on consuming", gap, expiry/2)
	if err := stop(); err != nil {
		t.Fatalf("worker: %v", err)
	}
}

// freezer is a TCP proxy that can stop passing bytes, both ways, without
// closing a connection: to its clients the server simply stops answering.
type freezer struct {
	ln     net.Listener
	target string
	gate   sync.RWMutex // write-locked while frozen
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, s)
			mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); f.pipe(s, c) }()
			go func() { defer conns.Done(); f.pipe(c, s) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

// freeze stops every connection; thaw lets the bytes held meanwhile through.
func (f *freezer) freeze() { f.gate.Lock() }
func (f *freezer) thaw()   { f.gate.Unlock() }

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.gate.RLock()
			_, werr := dst.Write(buf[:n])
			f.gate.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
