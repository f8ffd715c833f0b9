package worker

import (
	"context"
	"errors"
)

// Reasons /readyz gives; they name what is missing, never a dependency's
// error text.
var (
	errNATSDown     = errors.New("nats not connected")
	errDatabaseDown = errors.New("database not reachable")
)

// ready is the worker's metrics.ReadyFunc: NATS connected and a database
// connection usable. The admin server itself is metrics.NewServer.
func (w *worker) ready(ctx context.Context) error {
	if !w.nc.IsConnected() {
		return errNATSDown
	}
	if err := w.store.Ping(ctx); err != nil {
		return errDatabaseDown
	}
	return nil
}
