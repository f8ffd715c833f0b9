package storage

import (
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/models"
)

// Hooks for the external tests: the Reader's pool (to look at its session
// settings) and the SQL of its queries (to EXPLAIN exactly what it runs).

func ReaderPool(r *Reader) *pgxpool.Pool { return r.pool }

func ListSQL(t models.Type, q ListQuery) (string, []any, error) { return listSQL(t, q) }

func TrackSQL(deviceID string, from, to time.Time, limit int) (string, []any) {
	return trackSQL(deviceID, from, to, limit)
}

func StoredAfterSQL(t models.Type, since time.Time, lastID uuid.UUID, deviceID string, limit int) (string, []any) {
	return storedAfterSQL(t, since, lastID, deviceID, limit)
}

const (
	DeviceSQL      = deviceSQL
	ListDevicesSQL = listDevicesSQL
)
