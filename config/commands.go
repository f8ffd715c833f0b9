package config

import (
	"fmt"
	"time"
)

// Migrate is the configuration of `worker migrate`: only the database.
type Migrate struct {
	// DatabaseURL is the PostgreSQL DSN (URL or key=value form). Never log it.
	DatabaseURL string
}

// LoadMigrate reads the configuration of `worker migrate`. The error names
// the variable and never echoes the DSN.
func LoadMigrate(getenv Getenv) (Migrate, error) {
	e := &env{get: getenv}
	c := Migrate{DatabaseURL: e.databaseURL("DATABASE_URL")}
	if err := e.err(); err != nil {
		return Migrate{}, fmt.Errorf("worker migrate configuration: %w", err)
	}
	return c, nil
}

// DLQ is the configuration of `worker dlq`: only NATS, with the worker's
// defaults.
type DLQ struct {
	NATSURL string // one URL or a comma-separated list of a cluster's URLs
	// NATSConnectWait is how long the command keeps trying to reach NATS.
	NATSConnectWait time.Duration
}

// LoadDLQ reads the configuration of `worker dlq`. The error names every
// wrong variable and never echoes NATS credentials.
func LoadDLQ(getenv Getenv) (DLQ, error) {
	e := &env{get: getenv}
	c := DLQ{
		NATSURL:         e.natsURL("NATS_URL", DefaultNATSURL),
		NATSConnectWait: e.duration("NATS_CONNECT_TIMEOUT", DefaultNATSConnectTimeout, 0),
	}
	if err := e.err(); err != nil {
		return DLQ{}, fmt.Errorf("worker dlq configuration: %w", err)
	}
	return c, nil
}
