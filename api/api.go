// Package api runs the API: it connects to NATS, makes sure the JetStream
// topology exists, opens the read pool when DATABASE_URL is set, and serves
// the telemetry routes (package handlers) on the public listener and
// /metrics, /healthz and /readyz on the admin listener, until its context
// ends; then it shuts down gracefully.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/handlers"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/metrics"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Server is the ingest API with its listeners bound and NATS connected.
// Create it with New, then call Serve exactly once.
type Server struct {
	cfg     config.API
	log     *slog.Logger
	nc      *nats.Conn
	closed  chan struct{}   // closed when the NATS connection is closed
	reader  *storage.Reader // nil without DATABASE_URL
	stream  *liveStream     // feeds GET /telemetry/stream (stream.go); nil without DATABASE_URL
	ready   *readiness
	public  *http.Server
	admin   *http.Server
	ln      net.Listener
	adminLn net.Listener
}

// Run serves the API until ctx ends, then shuts down gracefully: stop
// accepting, finish in-flight requests and their publishes, drain NATS.
func Run(ctx context.Context, cfg config.API, log *slog.Logger) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// New connects to NATS (waiting up to cfg.NATSConnectWait), checks its
// max_payload, creates or updates the JetStream topology and binds both
// listeners, so Addr and AdminAddr are known (useful with ":0").
func New(ctx context.Context, cfg config.API, log *slog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{cfg: cfg, log: log, closed: make(chan struct{})}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()

	s.nc, err = messaging.Connect(ctx, cfg.NATSURL, "challenge-api", cfg.NATSConnectWait)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.nc.SetClosedHandler(func(*nats.Conn) { close(s.closed) })
	s.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err != nil { // nil: our own Close or Drain
			log.Warn("nats disconnected; publishes answer 503 until it is back", "error", err)
		}
	})
	s.nc.SetReconnectHandler(func(nc *nats.Conn) {
		log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
	})
	if err := messaging.CheckMaxPayload(s.nc); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("api: jetstream: %w", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second+cfg.NATSConnectWait)
	defer cancel()
	if err := messaging.EnsureTopologyWithin(tctx, js, cfg.Topology, cfg.NATSConnectWait, log); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	pub, err := messaging.NewPublisher(tctx, js, cfg.PublishTimeout)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}

	backends := handlers.Backends{Publisher: pub}
	if cfg.Read.DatabaseURL != "" {
		// The pool connects lazily: the API starts, and ingests, while
		// PostgreSQL is down; the read routes answer 503 until it is back.
		if s.reader, err = storage.OpenReader(ctx, cfg.Read.PoolDSN(), cfg.Read.StatementTimeout); err != nil {
			return nil, fmt.Errorf("api: DATABASE_URL: %w", err)
		}
		backends.Reader = s.reader
	}
	if len(cfg.Read.EncryptionKeys) > 0 {
		sealer, err := crypto.NewSealer(cfg.Read.EncryptionKeys)
		if err != nil {
			return nil, fmt.Errorf("api: ENCRYPTION_KEYS: %w", err)
		}
		backends.Sealer = sealer
	}
	reg := metrics.NewRegistry()
	if backends.Stream, err = s.startStream(reg); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	h, err := handlers.New(cfg, backends, reg, log)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.ready = &readiness{nc: s.nc, js: js}
	if s.reader != nil {
		s.ready.db = s.reader
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.public = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		// For HTTP/1.1 the write deadline starts when the headers are in,
		// so it must cover the body upload plus the publish.
		WriteTimeout:   cfg.ReadTimeout + cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       errLog,
	}
	s.admin = metrics.NewServer(reg, s.ready.notDraining, log, s.ready.checks()...)
	var lc net.ListenConfig
	if s.ln, err = lc.Listen(ctx, "tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("api: HTTP_ADDR: %w", err)
	}
	if s.adminLn, err = lc.Listen(ctx, "tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("api: ADMIN_ADDR: %w", err)
	}
	return s, nil
}

// Addr is the bound address of the public listener, e.g. 127.0.0.1:8080.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the bound address of the admin listener.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Serve serves both listeners until ctx ends or one of them fails, then
// shuts down gracefully: when ctx ended, after cfg.ShutdownDelay, within
// cfg.ShutdownTimeout. It returns nil after a clean shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("api listening", "http_addr", s.Addr(), "admin_addr", s.AdminAddr(),
		"nats", s.nc.ConnectedUrlRedacted(), "keys", len(s.cfg.APIKeys),
		"read_api", s.reader != nil, "images", len(s.cfg.Read.EncryptionKeys) > 0,
		"cors_origins", len(s.cfg.Read.CORSAllowedOrigins))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(s.public, s.ln, "public") })
	g.Go(func() error { return serve(s.admin, s.adminLn, "admin") })
	g.Go(func() error {
		<-gctx.Done()
		// A failed listener stops the API at once: a delay would only
		// keep a broken instance in the balancer's rotation.
		return s.shutdown(ctx.Err() != nil)
	})
	return g.Wait()
}

func serve(srv *http.Server, ln net.Listener, name string) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %s listener: %w", name, err)
	}
	return nil
}

// shutdown turns /readyz to 503, keeps serving for ShutdownDelay when asked
// to stop (so balancers polling /readyz stop sending traffic before the
// listener closes, instead of meeting "connection refused"), then stops
// accepting, waits for in-flight requests (and so their publishes), drains
// NATS, and closes the admin listener last so /readyz reports the drain
// while it lasts.
func (s *Server) shutdown(asked bool) error {
	start := time.Now()
	s.ready.draining.Store(true)
	if d := s.cfg.ShutdownDelay; asked && d > 0 {
		s.log.Info("api draining: waiting for load balancers to see /readyz fail", "delay", d.String())
		// Serve as usual meanwhile, keep-alive included: a balancer stops
		// using its pooled connections once it marks the instance down.
		// (SetKeepAlivesEnabled(false) would close the idle ones now.)
		time.Sleep(d)
	}
	s.log.Info("api shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	s.stream.close() // end the streams, which never finish by themselves
	if err := s.public.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("api: in-flight requests not finished: %w", err))
		_ = s.public.Close()
	}
	// While reconnecting there is nothing to drain: Drain closes at once.
	if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrConnectionReconnecting) {
		errs = append(errs, fmt.Errorf("api: nats drain: %w", err))
		s.nc.Close()
	}
	select {
	case <-s.closed:
	case <-ctx.Done():
		errs = append(errs, errors.New("api: nats drain did not finish in time"))
		s.nc.Close()
	}
	if s.reader != nil {
		s.reader.Close() // no request is left to use it
	}
	if err := s.admin.Shutdown(ctx); err != nil {
		_ = s.admin.Close()
	}
	s.log.Info("api stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return errors.Join(errs...)
}

// closeAll releases what New opened when it fails half-way.
func (s *Server) closeAll() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.adminLn != nil {
		_ = s.adminLn.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.reader != nil {
		s.reader.Close()
	}
}
