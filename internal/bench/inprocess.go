package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// inProcess is the real API and the real worker running in the bench's
// process, as cmd/api and cmd/worker run them, configured by their own
// loaders from a stackSettings.
type inProcess struct {
	baseURL string
	logs    *tailBuffer // both logs, JSON at the default level, as deployed
	cancel  context.CancelFunc
	apiDone chan error
	wrkDone chan error
}

// startInProcess starts the API, then the worker, and returns once the
// worker is pulling GPS messages.
func startInProcess(ctx context.Context, set stackSettings) (_ *inProcess, err error) {
	apiCfg, err := config.LoadAPI(envOf(set.apiEnv()))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	wenv, err := set.workerEnv()
	if err != nil {
		return nil, err
	}
	wcfg, err := config.LoadWorker(envOf(wenv))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s := &inProcess{logs: &tailBuffer{}, apiDone: make(chan error, 1), wrkDone: make(chan error, 1)}
	// The access log is formatted for every request, as in production; only
	// the write lands in memory instead of a pipe.
	log := config.Log{Level: apiCfg.LogLevel, Format: config.LogJSON}.Logger(s.logs)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	// One after the other: both create the JetStream topology at start-up,
	// and doing it concurrently trips a data race inside nats-server 2.10
	// (see internal/devstack/apiworker.go). api.New has done it on return.
	srv, err := api.New(runCtx, apiCfg, log.With("service", "api"))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bench: %w", err)
	}
	s.baseURL = "http://" + srv.Addr()
	go func() { s.apiDone <- srv.Serve(runCtx) }()
	go func() { s.wrkDone <- worker.Run(runCtx, wcfg, log.With("service", "worker")) }()
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	stopped := func() error {
		select {
		case err := <-s.wrkDone:
			s.wrkDone <- err // for stop
			return fmt.Errorf("bench: the worker stopped at start-up: %v", err)
		default:
			return nil
		}
	}
	if err := waitPulling(ctx, set.natsURL, 60*time.Second, stopped); err != nil {
		return nil, fmt.Errorf("%w; logs:\n%s", err, s.logs)
	}
	return s, nil
}

// stop shuts both down gracefully and returns what they returned.
func (s *inProcess) stop() error {
	s.cancel()
	var errs []error
	for name, done := range map[string]chan error{"api": s.apiDone, "worker": s.wrkDone} {
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		case <-time.After(40 * time.Second):
			errs = append(errs, fmt.Errorf("%s did not stop within 40 s", name))
		}
	}
	return errors.Join(errs...)
}

// waitPulling waits until a worker has a pull request waiting on the GPS
// consumer, i.e. it is ready to take the first reading, or until stopped
// returns an error (the worker is gone) or limit passes.
func waitPulling(ctx context.Context, natsURL string, limit time.Duration, stopped func() error) error {
	nc, err := nats.Connect(natsURL, nats.Name("bench-readiness"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	deadline := time.Now().Add(limit)
	for {
		if c, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS)); err == nil {
			if info, err := c.Info(ctx); err == nil && info.NumWaiting > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the worker is not pulling GPS messages after %s", limit)
		}
		if err := stopped(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
