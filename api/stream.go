package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/handlers"
	"github.com/challenge-v3/challenge-v3/models"
)

// liveStream feeds the stream hub from the worker's announcements: one core
// NATS subscription for the whole API, whatever the number of clients.
type liveStream struct {
	hub *handlers.Hub
	sub *nats.Subscription
}

// startStream subscribes to every stored-reading announcement and returns
// the hub the stream route serves from, or nil without DATABASE_URL (the
// read API, stream included, is off). The subscription is confirmed by the
// server before it returns, so a client connected after New sees every
// reading announced after it connected.
func (s *Server) startStream(reg prometheus.Registerer) (*handlers.Hub, error) {
	if s.cfg.Read.DatabaseURL == "" {
		return nil, nil
	}
	hub, err := handlers.NewHub(s.cfg.Stream, reg, s.log)
	if err != nil {
		return nil, err
	}
	log := s.log
	sub, err := s.nc.Subscribe(models.StoredSubjectPrefix+">", func(m *nats.Msg) {
		if err := announce(hub, m); err != nil {
			log.Warn("stream: announcement ignored", "subject", m.Subject, "error", err)
		}
	})
	if err == nil {
		err = s.nc.FlushTimeout(5 * time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("stream: subscribe %s>: %w", models.StoredSubjectPrefix, err)
	}
	s.stream = &liveStream{hub: hub, sub: sub}
	return hub, nil
}

// announce hands one announcement to the hub.
func announce(hub *handlers.Hub, m *nats.Msg) error {
	t, _ := strings.CutPrefix(m.Subject, models.StoredSubjectPrefix)
	id, err := uuid.Parse(m.Header.Get(models.StoredReadingIDHeader))
	if err != nil {
		return fmt.Errorf("header %s: %w", models.StoredReadingIDHeader, err)
	}
	return hub.Publish(models.Type(t), id, m.Data)
}

// close stops the subscription and ends every stream, so the public
// server's graceful shutdown does not wait for clients that never hang up.
func (ls *liveStream) close() {
	if ls == nil {
		return
	}
	_ = ls.sub.Unsubscribe()
	ls.hub.Close()
}
