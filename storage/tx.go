package storage

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/tracing"
)

// inTx runs fn in a transaction that commits when fn returns nil and rolls
// back otherwise: the one place where transactions end.
//
// The data writes of this package do not need it: each is a single
// statement (INSERT ... RETURNING feeding the audit INSERT through a
// data-modifying WITH), which PostgreSQL runs atomically in one round trip.
func inTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) (err error) {
	ctx, span := tracing.StartDB(ctx, "TRANSACTION", "", 0)
	defer func() { tracing.End(span, err) }()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// The rollback error adds nothing to fn's; a broken connection
			// is discarded by the pool either way.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
