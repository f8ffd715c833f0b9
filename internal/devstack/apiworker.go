package devstack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/worker"
)

// runAPIAndWorker configures the API and the worker through their own config
// loaders, runs them and prints the banner once both are ready; it returns
// when either stops (or ctx ends), both stopped.
func (s *stack) runAPIAndWorker(ctx context.Context) error {
	readDSN, err := apiDSN(s.dsn, s.apiDBPassword)
	if err != nil {
		return err
	}
	apiCfg, err := config.LoadAPI(s.apiEnv(readDSN))
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	workerCfg, err := config.LoadWorker(s.workerEnv())
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}

	// The worker starts first and the API once the worker's admin listener
	// is up (it opens after the streams are in place and the migrations ran)
	// and the API's database role is set up (it needs 0002's challenge_reader).
	// Both create or update the JetStream topology at start-up; doing it one
	// after the other keeps clear of a data race inside nats-server 2.10
	// between a stream update and an account-info request (reported
	// upstream as nats-io/nats-server#8114), which -race reports.
	apiUser := make(chan string, 1) // the database user the API reads as, for the banner
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := worker.Run(gctx, workerCfg, s.logger("worker", workerCfg.LogLevel)); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		return gctx.Err() // returning early without an error still stops the stack
	})
	g.Go(func() error {
		if err := waitHTTP(gctx, "http://"+dialAddr(s.workerAdmin)+"/healthz", 0); err != nil {
			return nil // the stack is stopping; the worker's error says why
		}
		readCfg, user, err := s.apiDatabase(gctx, apiCfg)
		if err != nil {
			return err
		}
		apiUser <- user
		if err := api.Run(gctx, readCfg, s.logger("api", readCfg.LogLevel)); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		return gctx.Err()
	})
	g.Go(func() error {
		s.printBannerWhenReady(gctx, apiUser, rateLimitLine(apiCfg))
		return nil
	})
	err = g.Wait()
	s.log.Info("API and worker stopped")
	return err
}

// apiEnv is the API's environment: the caller's, overlaid with the dev
// stack's addresses and API key, the database as dsn, and the photo keys
// (the image route decrypts with them).
func (s *stack) apiEnv(dsn string) config.Getenv {
	return overlay(withPhotoKeys(s.cfg.Getenv, s.keys.encryptionKeys), map[string]string{
		"HTTP_ADDR":    s.cfg.HTTPAddr,
		"ADMIN_ADDR":   s.apiAdmin,
		"NATS_URL":     s.nats.ClientURL(),
		"API_KEYS":     s.keys.apiKeys,
		"DATABASE_URL": dsn,
	})
}

// workerEnv is the worker's environment: the caller's, overlaid with the dev
// stack's addresses, database, key and Rekognition settings.
func (s *stack) workerEnv() config.Getenv {
	return overlay(withPhotoKeys(s.cfg.Getenv, s.keys.encryptionKeys), mergeMaps(map[string]string{
		"ADMIN_ADDR":   s.workerAdmin,
		"NATS_URL":     s.nats.ClientURL(),
		"DATABASE_URL": s.dsn,
	}, s.rekog.env))
}

// printBannerWhenReady prints the banner once the API and the worker answer
// /readyz; if they take too long it prints it anyway, with a warning, and if
// the stack is stopping it prints nothing.
func (s *stack) printBannerWhenReady(ctx context.Context, apiUser <-chan string, rateLimit string) {
	err := waitHTTP(ctx, "http://"+dialAddr(s.apiAdmin)+"/readyz", 2*time.Minute)
	if err == nil {
		err = waitHTTP(ctx, "http://"+dialAddr(s.workerAdmin)+"/readyz", 10*time.Second)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.log.Warn("the API or the worker is not ready yet; printing the banner anyway", "err", err)
	}
	var user string
	select {
	case user = <-apiUser:
	case <-ctx.Done():
		return
	}
	printBanner(s.cfg.Out, banner{
		apiURL:      "http://" + dialAddr(s.cfg.HTTPAddr),
		rateLimit:   rateLimit,
		apiAdmin:    "http://" + dialAddr(s.apiAdmin),
		workerAdmin: "http://" + dialAddr(s.workerAdmin),
		natsURL:     s.nats.ClientURL(),
		natsStore:   s.nats.StoreDir(),
		dsn:         s.dsn,
		apiDBUser:   user,
		devKey:      s.keys.devSecret,
		rekognition: s.rekog.describe,
		now:         time.Now(),
	})
}

// overlay returns a Getenv that answers from m first (non-empty values
// only), then from base.
func overlay(base config.Getenv, m map[string]string) config.Getenv {
	return func(name string) string {
		if v, ok := m[name]; ok && v != "" {
			return v
		}
		return base(name)
	}
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
