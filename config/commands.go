package config

import (
	"fmt"
	"time"

	"github.com/challenge-v3/challenge-v3/crypto"
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

// DLQ is the configuration of `worker dlq` and `worker status`: NATS, with
// the worker's defaults, and optionally the database.
type DLQ struct {
	NATSURL string // one URL or a comma-separated list of a cluster's URLs
	// NATSConnectWait is how long the command keeps trying to reach NATS.
	NATSConnectWait time.Duration
	// DatabaseURL, when set, is where replays and purges are audited (and
	// what `worker status` checks). "" for none. Never log it.
	DatabaseURL string
	// Log is how replays and purges are logged (to stderr; text unless
	// LOG_FORMAT says json).
	Log Log
}

// LoadDLQ reads the configuration of `worker dlq`. The error names every
// wrong variable and never echoes NATS credentials.
func LoadDLQ(getenv Getenv) (DLQ, error) {
	e := &env{get: getenv}
	c := DLQ{
		NATSURL:         e.natsURL("NATS_URL", DefaultNATSURL),
		NATSConnectWait: e.duration("NATS_CONNECT_TIMEOUT", DefaultNATSConnectTimeout, 0),
		DatabaseURL:     e.optionalDatabaseURL("DATABASE_URL"),
		Log:             Log{Level: e.logLevel(), Format: e.logFormat(LogText)},
	}
	if err := e.err(); err != nil {
		return DLQ{}, fmt.Errorf("worker dlq configuration: %w", err)
	}
	return c, nil
}

// Rekey is the configuration of `worker rekey`: the database and the keys.
type Rekey struct {
	// DatabaseURL is the PostgreSQL DSN of the photo table's owner. Never log it.
	DatabaseURL string
	// EncryptionKeys: the first re-seals, every one opens.
	EncryptionKeys []crypto.Key
	Log            Log
}

// LoadRekey reads the configuration of `worker rekey`. The error names
// every wrong variable and never echoes the DSN or a key.
func LoadRekey(getenv Getenv) (Rekey, error) {
	e := &env{get: getenv}
	c := Rekey{
		DatabaseURL: e.databaseURL("DATABASE_URL"),
		Log:         Log{Level: e.logLevel(), Format: e.logFormat(LogText)},
	}
	keys, err := crypto.ParseKeys(e.get("ENCRYPTION_KEYS"), e.get("ENCRYPTION_KEY"))
	if err != nil {
		e.errs = append(e.errs, err) // names the variable, never the key
	}
	c.EncryptionKeys = keys
	if err := e.err(); err != nil {
		return Rekey{}, fmt.Errorf("worker rekey configuration: %w", err)
	}
	return c, nil
}
