package handlers

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// slowUpload is a photo upload whose body the test writes by hand.
type slowUpload struct {
	pw   *io.PipeWriter
	body []byte
	resp chan *http.Response // the answer, or nil when the request failed
}

// startSlowUpload posts a multipart photo from client (X-Forwarded-For;
// the stack trusts loopback proxies) and writes the first half of its body.
func startSlowUpload(t *testing.T, s *stack, client string) *slowUpload {
	t.Helper()
	body, ct := multipartBody(t, photoParts("cam-"+client, rfc(time.Now()), jpegFixture)...)
	u := &slowUpload{resp: make(chan *http.Response, 1)}
	u.body, _ = io.ReadAll(body)
	pr, pw := io.Pipe()
	u.pw = pw
	// If the test ends early, end the upload so the server can close.
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/telemetry/photo", pr)
	req.ContentLength = int64(len(u.body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-API-Key", ingestSecret)
	req.Header.Set("X-Forwarded-For", client)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			resp = nil
		}
		u.resp <- resp
	}()
	if _, err := pw.Write(u.body[:len(u.body)/2]); err != nil {
		t.Fatal(err)
	}
	return u
}

// finish writes the rest of the body and returns the answer.
func (u *slowUpload) finish(t *testing.T) *http.Response {
	t.Helper()
	if _, err := u.pw.Write(u.body[len(u.body)/2:]); err != nil {
		t.Fatal(err)
	}
	u.pw.Close()
	resp := <-u.resp
	if resp == nil {
		t.Fatal("the upload failed")
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// One client opening many slow uploads gets only its share of the photo
// slots (429 too-many-uploads beyond it); another client still gets a slot
// and a 202.
func TestOneClientCannotTakeEveryPhotoSlot(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.PhotoMaxInFlight, c.PhotoPerClient = 4, 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.UploadRateGrace = 50 * time.Second // these uploads are slow on purpose
	})
	const hog = "203.0.113.7"
	uploads := make([]*slowUpload, 4)
	for i := range uploads {
		uploads[i] = startSlowUpload(t, s, hog)
	}
	// Two of them get a slot and wait for the rest of their body; the
	// others are answered at once. (Without a share per client, all four
	// wait and the slots are gone.)
	var refused []*http.Response
	answered := map[*slowUpload]bool{}
	for deadline := time.Now().Add(10 * time.Second); len(refused) < 2 && time.Now().Before(deadline); {
		for _, u := range uploads {
			select {
			case resp := <-u.resp:
				if resp == nil {
					t.Fatal("an upload failed")
				}
				t.Cleanup(func() { resp.Body.Close() })
				refused = append(refused, resp)
				answered[u] = true
			default:
			}
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Another client's photo is accepted meanwhile.
	body, ct := multipartBody(t, photoParts("cam-other", rfc(time.Now()), jpegFixture)...)
	wantStatus(t, s.do(http.MethodPost, "/telemetry/photo", ct, body, "X-Forwarded-For", "203.0.113.8"), http.StatusAccepted)

	if len(refused) != 2 {
		t.Fatalf("%d of the hog's 4 uploads were refused at once, want 2", len(refused))
	}
	for _, resp := range refused {
		p := checkProblem(t, resp, http.StatusTooManyRequests)
		if p.Type != ProblemTypeBase+"too-many-uploads" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("refusal: Retry-After %q, problem %+v", resp.Header.Get("Retry-After"), p)
		}
	}
	// The held uploads complete normally; the hog's share frees with them.
	for _, u := range uploads {
		if !answered[u] {
			wantStatus(t, u.finish(t), http.StatusAccepted)
		}
	}
	body, ct = multipartBody(t, photoParts("cam-hog", rfc(time.Now()), jpegFixture)...)
	wantStatus(t, s.do(http.MethodPost, "/telemetry/photo", ct, body, "X-Forwarded-For", hog), http.StatusAccepted)
}

// rawExchange sends a request head and then its body in chunks of chunk
// bytes every interval on a raw connection (a client on a bad link), and
// returns the answer as soon as it arrives, with the time it took, and
// whether the server then closed the connection. It gives up after limit.
func rawExchange(t *testing.T, s *stack, head string, body []byte, chunk int, interval, limit time.Duration) (*http.Response, []byte, time.Duration, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		resp *http.Response
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	br := bufio.NewReader(conn)
	go func() {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		got <- answer{resp, b, err}
	}()
	giveUp := time.After(limit)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case a := <-got:
			if a.err != nil {
				t.Fatalf("reading the answer: %v", a.err)
			}
			took := time.Since(start)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := br.ReadByte()
			return a.resp, a.body, took, err == io.EOF
		case <-giveUp:
			t.Fatalf("no answer within %s", limit)
		case <-tick.C:
			if len(body) > 0 {
				n := min(chunk, len(body))
				if _, err := conn.Write(body[:n]); err != nil {
					body = nil // the server hung up; its answer is on the way
					continue
				}
				body = body[n:]
			}
		}
	}
}

func photoRequestHead(contentType string, length int) string {
	return "POST /telemetry/photo HTTP/1.1\r\nHost: test\r\nX-API-Key: " + ingestSecret +
		"\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n"
}

// A body that trickles in (or stalls) is cut off with 408 and the
// connection closed once it falls behind UPLOAD_MIN_RATE after the grace,
// long before the read timeout; a fast 5 MiB upload through the same
// server is not affected.
func TestSlowBodiesAreCutOff(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.UploadMinRate, c.UploadRateGrace = 32<<10, 500*time.Millisecond
		c.ReadTimeout = time.Minute
		// 5 MiB publishes under -race on a busy machine take seconds.
		c.PublishTimeout, c.RequestTimeout, c.ShutdownTimeout = 20*time.Second, 30*time.Second, 40*time.Second
	})
	photo := []byte(`{"device_id":"d","timestamp":"` + rfc(time.Now()) + `","photo":"` + base64.StdEncoding.EncodeToString(jpegFixture) + `"}`)
	for _, c := range []struct {
		name     string
		chunk    int
		interval time.Duration
	}{
		{"trickle 10 KiB/s", 1 << 10, 100 * time.Millisecond},
		{"stalled after 1 KiB", 1 << 10, time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := photo[1<<10:]
			if c.interval == time.Hour {
				body = nil
			}
			head := photoRequestHead("application/json", len(photo)) + string(photo[:1<<10])
			// At 10 KiB/s this body would take ~12 s; the cut comes at ~0.6 s.
			resp, b, took, closed := rawExchange(t, s, head, body, c.chunk, c.interval, 15*time.Second)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), `"type":"`+ProblemTypeBase+`upload-too-slow"`) {
				t.Fatalf("answer %d %s", resp.StatusCode, b)
			}
			if took > 10*time.Second {
				t.Errorf("cut off after %s; the read timeout is %s", took, s.cfg.ReadTimeout)
			}
			if !closed || !resp.Close {
				t.Errorf("the connection stays open (closed %v, Connection: close %v)", closed, resp.Close)
			}
			t.Logf("cut off after %s", took.Round(time.Millisecond))
		})
	}
	t.Run("fast 5 MiB upload", func(t *testing.T) {
		img := append(append([]byte{}, jpegFixture...), make([]byte, s.cfg.Limits.MaxPhotoBytes-len(jpegFixture))...)
		body, ct := multipartBody(t, photoParts("d", rfc(time.Now()), img)...)
		wantStatus(t, s.do(http.MethodPost, "/telemetry/photo", ct, body), http.StatusAccepted)
	})
}

// A reading's body is short enough to arrive whole within the grace, so it
// is judged by one deadline for all of it (grace + length / rate), set once:
// one that stalls, or trickles slower than that average, is still cut off
// with 408 within about one grace of the per-byte schedule, far before the
// read timeout; one sent in pieces that arrives in time is accepted.
func TestSmallBodiesAreJudgedWhole(t *testing.T) {
	const grace = 300 * time.Millisecond
	withGrace := func(grace time.Duration) *stack {
		return newStack(t, func(c *config.API) {
			c.UploadMinRate, c.UploadRateGrace, c.ReadTimeout = 1<<10, grace, time.Minute
		})
	}
	short := withGrace(grace)
	// The body sent in pieces gets a grace no scheduling delay on a busy
	// machine can eat: what it shows is that pieces after the one
	// deadline are read, not how fast they come.
	long := withGrace(5 * time.Second)
	body := []byte(gpsBody()) // ~60 bytes: due whole within grace + ~60 ms
	head := func(n int) string {
		return "POST /telemetry/gps HTTP/1.1\r\nHost: test\r\nX-API-Key: " + ingestSecret +
			"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	}
	for _, c := range []struct {
		name     string
		s        *stack
		rest     []byte // sent after the first 10 bytes, chunk bytes a tick
		chunk    int
		interval time.Duration
		want     int
	}{
		{"stalled after 10 bytes", short, nil, 1, time.Hour, http.StatusRequestTimeout},
		{"a byte every 50 ms", short, body[10:], 1, 50 * time.Millisecond, http.StatusRequestTimeout},
		{"in three pieces within the grace", long, body[10:], 20, 50 * time.Millisecond, http.StatusAccepted},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.s
			resp, b, took, closed := rawExchange(t, s, head(len(body))+string(body[:10]), c.rest, c.chunk, c.interval, 15*time.Second)
			if resp.StatusCode != c.want {
				t.Fatalf("answer %d %s, want %d", resp.StatusCode, b, c.want)
			}
			if c.want != http.StatusRequestTimeout {
				return
			}
			if !strings.Contains(string(b), `"type":"`+ProblemTypeBase+`upload-too-slow"`) {
				t.Errorf("answer %s", b)
			}
			if took < grace || took > 10*time.Second {
				t.Errorf("cut off after %s; the grace is %s and the read timeout %s", took, grace, s.cfg.ReadTimeout)
			}
			if !closed {
				t.Error("the connection stays open")
			}
			t.Logf("cut off after %s", took.Round(time.Millisecond))
		})
	}
}

// slowPublisher takes its time to acknowledge, as JetStream under load.
type slowPublisher struct {
	publisher
	delay time.Duration
}

func (p slowPublisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return ierr.E(ierr.Unavailable, "slowPublisher", ctx.Err())
	}
	return p.publisher.Publish(ctx, subject, msgID, data)
}

// The rate is judged while the body is read, not after: a body read at
// once is answered 202 however long its publish takes (past the moment its
// next byte would have been due, and past the read timeout), and its
// connection is kept for the next request.
func TestPacingEndsWithTheBody(t *testing.T) {
	s := newStackWrapped(t, func(c *config.API) {
		c.UploadMinRate, c.UploadRateGrace, c.ReadTimeout = 32<<10, 100*time.Millisecond, time.Second
		c.PublishTimeout, c.RequestTimeout = 3*time.Second, 4*time.Second
	}, Backends{}, func(p publisher) publisher { return slowPublisher{p, 1500 * time.Millisecond} })
	for i := range 2 {
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, s.srv.URL+"/telemetry/gps", strings.NewReader(gpsBody()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", ingestSecret)
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, resp, http.StatusAccepted)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i == 1 && !reused {
			t.Error("the connection was not kept")
		}
	}
}
