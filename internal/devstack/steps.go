package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// prepareState creates the state directory, checks the API address, picks
// the admin addresses and loads (or generates) the keys kept under Dir; it
// starts nothing, so a failure here leaves nothing to stop.
func (s *stack) prepareState() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if err := checkListenAddr(s.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("devstack: API address %s is taken (set HTTP_ADDR to another one): %w", s.cfg.HTTPAddr, err)
	}
	var err error
	if s.apiAdmin, err = freeAddr(s.cfg.APIAdminAddr); err != nil {
		return err
	}
	if s.workerAdmin, err = freeAddr(s.cfg.WorkerAdminAddr); err != nil {
		return err
	}
	if s.keys, err = loadKeys(s.cfg.Dir, s.cfg.Getenv); err != nil {
		return err
	}
	s.log.Info("photo encryption keys", "ids", s.keys.keyIDs, "active", strings.Split(s.keys.keyIDs, ",")[0],
		"kept_in", filepath.Join(s.cfg.Dir, KeyFile))
	s.apiDBPassword, err = persistedSecret(filepath.Join(s.cfg.Dir, "api-db-password"), func() (string, error) {
		return randomHex(24)
	})
	return err
}

// startNATS starts the embedded NATS server, its JetStream store under
// Dir/nats.
func (s *stack) startNATS() error {
	ns, err := startNATSServer(filepath.Join(s.cfg.Dir, "nats"), s.cfg.NATSPort, s.cfg.Getenv("LOG_LEVEL") == "debug")
	if err != nil {
		return err
	}
	s.nats = ns
	s.log.Info("NATS with JetStream started", "url", ns.ClientURL(), "store", ns.StoreDir())
	return nil
}

func (s *stack) stopNATS() {
	s.nats.Shutdown()
	s.nats.WaitForShutdown()
	s.log.Info("NATS stopped")
}

// startPostgres uses the caller's server (DATABASE_URL), or else our
// persistent cluster.
func (s *stack) startPostgres(ctx context.Context) error {
	if s.cfg.DatabaseURL != "" {
		s.dsn = s.cfg.DatabaseURL
		s.log.Info("using PostgreSQL from DATABASE_URL")
		return nil
	}
	pg, err := startCluster(ctx, s.cfg.Dir, s.cfg.PGPort, s.log)
	if err != nil {
		return err
	}
	s.pg, s.dsn = pg, pg.DSN(DatabaseName)
	return nil
}

// stopPostgres stops the cluster startPostgres started, if any.
func (s *stack) stopPostgres() error {
	if s.pg == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.pg.Stop(ctx)
	s.log.Info("PostgreSQL stopped")
	return err
}

// startCluster starts (initializing on first use) the persistent cluster
// under dir/pg and creates the dev database. As root in a checkout the
// "postgres" user cannot enter (/root), dir/pg is a link to the cluster in
// localpg.DefaultSharedDir (SPEC §6: make run works from wherever the
// checkout is).
func startCluster(ctx context.Context, dir string, port int, log *slog.Logger) (*localpg.Cluster, error) {
	if port != 0 && !localpg.PortFree(port) {
		log.Info("PostgreSQL port busy, picking a free one", "port", port)
		port = 0
	}
	t0 := time.Now()
	pg, err := localpg.Start(ctx, localpg.Options{Dir: filepath.Join(dir, "pg"), Port: port, Persistent: true})
	if err != nil {
		return nil, fmt.Errorf("devstack: PostgreSQL (set DATABASE_URL to use an existing server instead): %w", err)
	}
	if err := pg.CreateDatabase(ctx, DatabaseName); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("devstack: %w", err), pg.Stop(sctx))
	}
	log.Info("PostgreSQL started", "port", pg.Port(), "data", pg.DataDir(), "took", time.Since(t0).Round(time.Millisecond))
	if link := filepath.Join(dir, "pg"); isSymlink(link) {
		log.Info("the cluster lives outside the checkout, where the postgres OS user can reach it; "+
			"make clean removes the link, and the next make run starts a new cluster there", "link", link, "cluster", filepath.Dir(pg.DataDir()))
	}
	return pg, nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}
