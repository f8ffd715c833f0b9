package bench

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/uuidv7"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// The servers the API is compared with. Each is what its name says and no
// more, so that the distance between two of them is the cost of what one
// does and the other does not:
//
//	bare net/http        decode the GPS body, 202 (the HTTP ceiling, no NATS)
//	minimal durable      decode, async publish, await the ack, 202
//	straightforward sync what a first implementation of this API looks like
//	this API             api.New with every feature on
//
// Every one makes its ids as the API does (internal/uuidv7), so the id
// generator is no part of any distance, and every one answers 202 with the
// same {"id":…,"status":"accepted"} body, so
// they write the same bytes.

// benchKey is the API key of the servers that authenticate.
const benchKey = "bench-secret-0123456789abcdef"

// variant is one server under test, listening on loopback.
type variant struct {
	URL  string
	stop func()
}

// serve runs h on a fresh loopback listener with the timeouts api.New uses.
func serve(h http.Handler) (*variant, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	return &variant{URL: "http://" + ln.Addr().String(), stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}}, nil
}

// accepted writes the 202 every variant answers.
func accepted(w http.ResponseWriter, id uuid.UUID) {
	b := make([]byte, 0, 64)
	b = append(b, `{"id":"`...)
	b = append(b, id.String()...)
	b = append(b, `","status":"accepted"}`+"\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(b)
}

// decodeGPS is the decoding every variant does: the project's strict
// decoder and validation, under the API's body limit.
func decodeGPS(w http.ResponseWriter, r *http.Request) (models.GPS, error) {
	return models.Decode[models.GPS](http.MaxBytesReader(w, r.Body, 64<<10), time.Now().UTC(), models.DefaultLimits())
}

// bareHandler decodes and answers 202: no NATS.
func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := decodeGPS(w, r); err != nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		accepted(w, uuidv7.New())
	})
}

// asyncJS is a JetStream context for asynchronous publishing with a bound
// on pending acks, as a minimal durable server would use.
func asyncJS(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(5*time.Second))
}

// await waits for one async publish's ack.
func await(ctx context.Context, paf jetstream.PubAckFuture) error {
	select {
	case <-paf.Ok():
		return nil
	case err := <-paf.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// message completes a decoded reading as the API does: an id, a receipt
// time, the queue's JSON.
func message(g *models.GPS) (uuid.UUID, []byte, error) {
	id := uuidv7.New()
	g.MessageID, g.ReceivedAt, g.Actor = id, time.Now().UTC().Truncate(time.Microsecond), "bench"
	b, err := models.Marshal(g)
	return id, b, err
}

// minimalHandler decodes, publishes asynchronously, waits for the ack and
// answers 202: nothing else.
func minimalHandler(js jetstream.JetStream) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := decodeGPS(w, r)
		if err != nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		id, data, err := message(&g)
		if err != nil {
			http.Error(w, "internal", http.StatusInternalServerError)
			return
		}
		paf, err := js.PublishMsgAsync(&nats.Msg{Subject: models.TypeGPS.Subject(), Data: data})
		if err == nil {
			err = await(r.Context(), paf)
		}
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		accepted(w, id)
	})
}

// minimalBatchHandler decodes a JSON array of readings (each with the
// project's batch decoder, as the API does), publishes each asynchronously,
// waits for every ack and answers 202 with the ids: nothing else.
func minimalBatchHandler(js jetstream.JetStream) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var raws []json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&raws); err != nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		now := time.Now().UTC()
		pafs := make([]jetstream.PubAckFuture, 0, len(raws))
		ids := make([]string, 0, len(raws))
		for _, raw := range raws {
			v, err := models.DecodeBatchReading(raw, now, models.DefaultLimits())
			if err != nil {
				http.Error(w, "invalid", http.StatusBadRequest)
				return
			}
			id := uuidv7.New()
			meta := v.Envelope()
			meta.MessageID, meta.ReceivedAt, meta.Actor = id, now.Truncate(time.Microsecond), "bench"
			data, err := models.Marshal(v)
			if err != nil {
				http.Error(w, "internal", http.StatusInternalServerError)
				return
			}
			paf, err := js.PublishMsgAsync(&nats.Msg{Subject: v.Type().Subject(), Data: data})
			if err != nil {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
			pafs = append(pafs, paf)
			ids = append(ids, id.String())
		}
		for _, paf := range pafs {
			if err := await(r.Context(), paf); err != nil {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(struct {
			Accepted int      `json:"accepted"`
			IDs      []string `json:"ids"`
		}{len(ids), ids})
	})
}

// straightforwardHandler is a first, reasonable implementation of the GPS
// route: a synchronous publish with Nats-Msg-Id per request, behind a
// request log, a recover and an API-key check.
func straightforwardHandler(js jetstream.JetStream, log *slog.Logger) http.Handler {
	digest := sha256.Sum256([]byte(benchKey))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := decodeGPS(w, r)
		if err != nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		id, data, err := message(&g)
		if err != nil {
			http.Error(w, "internal", http.StatusInternalServerError)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: models.TypeGPS.Subject(), Data: data,
			Header: nats.Header{jetstream.MsgIDHeader: []string{id.String()}}})
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id.String(), "status": "accepted"})
	})
	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sum := sha256.Sum256([]byte(r.Header.Get("X-API-Key")))
			if subtle.ConstantTimeCompare(sum[:], digest[:]) != 1 {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	recoverer := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					log.Error("panic", "value", fmt.Sprint(v))
					http.Error(w, "internal", http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
	requestLog := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			log.Info("http request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"duration", time.Since(start), "remote", r.RemoteAddr)
		})
	}
	return requestLog(recoverer(auth(h)))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// startAPI runs the real API (package api) against natsURL: rate limiting
// off, one ingest key, metrics, request ids and logging at the default
// level into log.
func startAPI(ctx context.Context, natsURL string, log *slog.Logger) (*variant, error) {
	env := map[string]string{
		"HTTP_ADDR":      "127.0.0.1:0",
		"ADMIN_ADDR":     "127.0.0.1:0",
		"NATS_URL":       natsURL,
		"API_KEYS":       "bench:" + benchKey + ":ingest",
		"RATE_LIMIT_RPS": "0",
	}
	cfg, err := config.LoadAPI(func(k string) string { return env[k] })
	if err != nil {
		return nil, err
	}
	cfg.Topology = messaging.DefaultTopology()
	s, err := api.New(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx) }()
	return &variant{URL: "http://" + s.Addr(), stop: func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("bench: api stopped with an error", "error", err)
		}
	}}, nil
}

// discardLogger is the api binary's logger at its defaults (JSON, info),
// writing to io.Discard: the formatting is paid for, the write is not.
func discardLogger() *slog.Logger {
	return config.Log{Level: slog.LevelInfo, Format: config.LogJSON}.Logger(io.Discard)
}

// The variants of the "api" section, in the order each round runs them.
const (
	variantBare            = "bare net/http"
	variantMinimal         = "minimal durable"
	variantStraightforward = "straightforward sync"
	variantAPI             = "this API"
	variantMinimalBatch    = "minimal durable batch"
)

var variants = []string{variantBare, variantMinimal, variantStraightforward, variantAPI}

// startVariant starts the named variant on a fresh embedded NATS server
// with the project's topology, and returns it with a JetStream context on
// that server (for counting and purging the stream).
//
// Everything the variant starts runs under the pprof label variant=name
// (goroutines inherit their creator's labels): its NATS server, its client
// connection's goroutines and its HTTP server's, so a CPU profile of the
// run (-cpuprofile) splits by variant with -tagfocus.
func startVariant(ctx context.Context, env *Env, name string) (v *variant, js jetstream.JetStream, err error) {
	pprof.Do(ctx, pprof.Labels("variant", name), func(ctx context.Context) {
		v, js, err = startVariantLabelled(ctx, env, name)
	})
	return v, js, err
}

func startVariantLabelled(ctx context.Context, env *Env, name string) (*variant, jetstream.JetStream, error) {
	ns, err := env.NewNATS()
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(ns.URL, nats.Name("bench "+name))
	if err != nil {
		return nil, nil, err
	}
	env.OnClose(nc.Close)
	js, err := asyncJS(nc)
	if err != nil {
		return nil, nil, err
	}
	if err := messaging.EnsureTopology(ctx, js, messaging.DefaultTopology()); err != nil {
		return nil, nil, err
	}
	var v *variant
	switch name {
	case variantBare:
		v, err = serve(bareHandler())
	case variantMinimal:
		v, err = serve(minimalHandler(js))
	case variantMinimalBatch:
		v, err = serve(minimalBatchHandler(js))
	case variantStraightforward:
		v, err = serve(straightforwardHandler(js, discardLogger()))
	case variantAPI:
		v, err = startAPI(ctx, ns.URL, discardLogger())
	default:
		err = fmt.Errorf("bench: no variant %q", name)
	}
	if err != nil {
		return nil, nil, err
	}
	return v, js, nil
}

// gpsBodies returns n distinct valid GPS request bodies: 1,000 devices,
// positions around São Paulo, timestamps a few seconds old.
func gpsBodies(n int) [][]byte {
	out := make([][]byte, n)
	ts := time.Now().UTC().Add(-5 * time.Second).Format(time.RFC3339)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"device_id":"bench-%04d","timestamp":"%s","latitude":%.6f,"longitude":%.6f}`,
			i%1000, ts, -23.55+float64(i%97)/1e4, -46.63-float64(i%89)/1e4)
	}
	return out
}
