package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// answer is one request of a cluster test's load: when it was answered,
// with what status, and the Retry-After of a refusal.
type answer struct {
	at         time.Time
	took       time.Duration
	status     int
	retryAfter string
}

// clusterLoad posts GPS and gyroscope readings from a few goroutines until
// stopped (at most perGoroutine each), recording the id of every reading
// accepted in a and every answer, retries included, in answers.
type clusterLoad struct {
	apiURL  string
	mu      sync.Mutex
	answers []answer
	stop    func()
}

func (s *stack) clusterLoad(a *accepted, goroutines, perGoroutine int) *clusterLoad {
	l := &clusterLoad{apiURL: s.apiURL}
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := openapitest.Client(s.t) // every exchange checked against the OpenAPI document
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			device := fmt.Sprintf("cluster-%d", g)
			for i := range perGoroutine {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
				path, typ, body := "/telemetry/gps", models.TypeGPS, gpsBody(device, i)
				if i%2 == 1 {
					path, typ = "/telemetry/gyroscope", models.TypeGyroscope
					body = map[string]any{"device_id": device, "timestamp": 1764324000 + i, "x": i, "y": -i, "z": 0.5}
				}
				id, ok := l.post(s.t, client, path, body, device+"-"+strconv.Itoa(i))
				if !ok {
					return
				}
				a.add(id, typ)
			}
		}()
	}
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	s.t.Cleanup(l.stop)
	return l
}

// post sends one reading as a phone does: a 503 is retried with the same
// Idempotency-Key (at most 100 times, 100 ms apart) until it is answered
// 202, whose id it returns. The key matters: a publish whose ack was lost
// in the election is answered 503 although JetStream stored it, and only
// the key makes its retry the same message (deduplicated by Nats-Msg-Id)
// rather than a second reading.
func (l *clusterLoad) post(t *testing.T, client *http.Client, path string, body map[string]any, key string) (string, bool) {
	b, _ := json.Marshal(body)
	for range 100 {
		req, err := http.NewRequest(http.MethodPost, l.apiURL+path, bytes.NewReader(b))
		if err != nil {
			t.Error(err)
			return "", false
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", apiSecret)
		req.Header.Set("Idempotency-Key", key)
		sent := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("POST %s: %v", path, err)
			return "", false
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.mu.Lock()
		l.answers = append(l.answers, answer{at: time.Now(), took: time.Since(sent), status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")})
		l.mu.Unlock()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return out["id"].(string), true
		case http.StatusServiceUnavailable:
			time.Sleep(100 * time.Millisecond)
		default:
			t.Errorf("POST %s: %d %v", path, resp.StatusCode, out)
			return "", false
		}
	}
	t.Errorf("POST %s (Idempotency-Key %s): 503 a hundred times", path, key)
	return "", false
}

// since returns the answers given after t.
func (l *clusterLoad) since(t time.Time) []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []answer
	for _, a := range l.answers {
		if a.at.After(t) {
			out = append(out, a)
		}
	}
	return out
}

// refusals sums up the answers given between from and to: how many were
// 503, when the last of them came (from from), and the slowest answer. A 503
// without Retry-After fails the test.
func (l *clusterLoad) refusals(t *testing.T, from, to time.Time) (refused int, last, slowest time.Duration) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ans := range l.answers {
		if ans.at.Before(from) || ans.at.After(to) {
			continue
		}
		slowest = max(slowest, ans.took)
		if ans.status != http.StatusServiceUnavailable {
			continue
		}
		refused++
		last = ans.at.Sub(from)
		if ans.retryAfter == "" {
			t.Errorf("a 503 at +%s without Retry-After", last.Round(time.Millisecond))
		}
	}
	return refused, last, slowest
}

// clusterUnderTest is a 3-node NATS cluster whose nodes a fault scenario
// stops: embedded servers (a clean stop) or processes (SIGKILL).
type clusterUnderTest interface {
	url() string
	// streamLeader and consumerLeader wait, until ctx ends, for a running
	// node that leads TELEMETRY or the consumer, and return its index.
	streamLeader(ctx context.Context) (int, error)
	consumerLeader(ctx context.Context, consumer string) (int, error)
	stop(i int)
	// restart starts node i again and waits until it is current.
	restart(i int)
}

// embeddedCluster is testenv.NATSCluster as a clusterUnderTest: stop is
// the server's Shutdown, which hands its leaderships over first.
type embeddedCluster struct {
	t *testing.T
	c *testenv.NATSCluster
}

func (e embeddedCluster) url() string { return e.c.URL }
func (e embeddedCluster) streamLeader(ctx context.Context) (int, error) {
	return e.c.StreamLeader(ctx, messaging.StreamName)
}
func (e embeddedCluster) consumerLeader(ctx context.Context, consumer string) (int, error) {
	for {
		if i := e.c.ConsumerLeaders(messaging.StreamName, consumer)[0]; i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
func (e embeddedCluster) stop(i int)    { e.c.Nodes[i].Stop() }
func (e embeddedCluster) restart(i int) { e.c.Restart(e.t, i, messaging.StreamName) }

// procCluster is natsProcCluster as a clusterUnderTest: stop is SIGKILL.
type procCluster struct{ c *natsProcCluster }

func (p procCluster) url() string { return p.c.urlList }
func (p procCluster) streamLeader(ctx context.Context) (int, error) {
	return p.c.clusterLeader(ctx, "")
}
func (p procCluster) consumerLeader(ctx context.Context, consumer string) (int, error) {
	return p.c.clusterLeader(ctx, consumer)
}
func (p procCluster) stop(i int)    { p.c.kill(i) }
func (p procCluster) restart(i int) { p.c.restart(i) }

// A 3-node NATS cluster with R3 streams (NATS_REPLICAS=3) loses the node
// that leads TELEMETRY under load; later, with that node back, the node that
// leads the GPS consumer. Publishes are refused with 503 and Retry-After
// while a new leader is elected, never answered otherwise, and accepted
// again after the election; the worker, connected with every node's URL,
// rides through (it may subscribe again) and every reading answered 202 is
// stored once with its audit row, none dead-lettered. The phones retry a
// 503 with the same Idempotency-Key, so a reading JetStream stored although
// its answer was a 503 (the ack lost in the election) is not stored a
// second time. Here the nodes are embedded servers stopped cleanly (they
// hand their leaderships over); TestNATSClusterLeaderKilled kills
// processes.
func TestNATSClusterLosesTheStreamLeader(t *testing.T) {
	clusterFaults(t, embeddedCluster{t: t, c: testenv.NewNATSCluster(t, 3)}, "stopped")
}

// The same with nats-server processes (the module's 2.10, as deployed)
// killed with SIGKILL: the followers elect a leader only once they miss
// the dead one's heartbeats.
func TestNATSClusterLeaderKilled(t *testing.T) {
	clusterFaults(t, procCluster{newNATSProcCluster(t, 3)}, "killed")
}

// clusterFaults runs the scenario of the tests above on c; how says what
// stop does to a node.
func clusterFaults(t *testing.T, c clusterUnderTest, how string) {
	// A 10 s AckWait: an ack sent to a node that died is lost, and its
	// message comes back (a redelivery, a duplicate) after AckWait.
	s := newStack(t, map[string]string{"NATS_URL": c.url(), "NATS_REPLICAS": "3",
		"CONSUMER_ACK_WAIT": "10s", "RECOGNITION_TIMEOUT": "4s"})
	_, s.js = testenv.JetStream(t, c.url()) // the stack's own single server stays unused
	// within bounds each wait for the cluster.
	within := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	st, err := s.js.Stream(within(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("TELEMETRY has %d replicas, want 3", r)
	}
	s.startWorker()
	// led names the consumers node i leads.
	led := func(i int) []string {
		var out []string
		for _, typ := range models.Types {
			name := messaging.ConsumerName(typ)
			if l, err := c.consumerLeader(within(), name); err == nil && l == i {
				out = append(out, name)
			}
		}
		return out
	}
	resubscribed := func() int { return strings.Count(s.logs.String(), "consumer subscription failed") }

	var a accepted
	load := s.clusterLoad(&a, 4, 2000)
	s.eventually("readings accepted before the fault", func() (bool, string) {
		return a.len() >= 100, fmt.Sprint(a.len(), " accepted")
	})

	// First fault: the TELEMETRY leader.
	leader, err := c.streamLeader(within())
	if err != nil {
		t.Fatal(err)
	}
	alsoLed := led(leader)
	first := time.Now()
	before := a.len()
	c.stop(leader)
	next, err := c.streamLeader(within())
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(first)
	s.eventually("readings accepted after the election", func() (bool, string) {
		return a.len() >= before+200, fmt.Sprint(a.len()-before, " accepted since the fault")
	})
	resub1 := resubscribed()

	// Second fault: the stopped node comes back and catches up, then the
	// node that leads the GPS consumer, the worker's busiest pull, stops.
	c.restart(leader)
	gpsLeader, err := c.consumerLeader(within(), messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	alsoLed2 := led(gpsLeader)
	second := time.Now()
	before = a.len()
	c.stop(gpsLeader)
	s.eventually("readings accepted after the second fault", func() (bool, string) {
		return a.len() >= before+200, fmt.Sprint(a.len()-before, " accepted since the second fault")
	})
	load.stop()
	stopped := time.Now()
	// Settled: every consumer has a running leader to answer for it, and
	// nothing left to deliver or to be acknowledged (a lost ack: AckWait).
	for _, typ := range models.Types {
		if _, err := c.consumerLeader(within(), messaging.ConsumerName(typ)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(40 * time.Second); ; {
		waiting := 0
		for _, info := range s.consumerInfos() {
			waiting += int(info.NumPending) + info.NumAckPending
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still undelivered or unacknowledged 40 s after the load", waiting)
		}
		time.Sleep(100 * time.Millisecond)
	}

	refused1, last1, slowest1 := load.refusals(t, first, second)
	refused2, last2, slowest2 := load.refusals(t, second, stopped)
	r := s.storedExactlyOnce(&a, stopped)
	t.Logf("fault 1: TELEMETRY leader n%d %s, leading consumers %v too; n%d elected after %s; %d answers 503 + Retry-After, the last at +%s; slowest answer %s; worker subscribed again %d times",
		leader+1, how, alsoLed, next+1, elected.Round(time.Millisecond), refused1, last1.Round(time.Millisecond), slowest1.Round(time.Millisecond), resub1)
	t.Logf("fault 2: n%d back and current, then the GPS consumer's leader n%d %s, leading %v; %d answers 503 + Retry-After, the last at +%s; slowest answer %s; worker subscribed again %d times",
		leader+1, gpsLeader+1, how, alsoLed2, refused2, last2.Round(time.Millisecond), slowest2.Round(time.Millisecond), resubscribed()-resub1)
	r.log(t, "3-node cluster, R3, two nodes "+how+" in turn under load (recovered: everything stored, counted from the end of the load)")
}
