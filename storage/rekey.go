package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// ActionPhotoRekeyed is the audit action of one batch of RekeyPhotos.
const ActionPhotoRekeyed = "photo.rekeyed"

// RekeyBatch is what one RekeyPhotos call did.
type RekeyBatch struct {
	Rows    int            // photos re-sealed
	LastID  int64          // highest photo id re-sealed; pass it back as after
	FromKey map[string]int // photos re-sealed, by the key they were sealed under
}

// CountPhotosToRekey counts the photos not sealed under activeKeyID.
func (s *Store) CountPhotosToRekey(ctx context.Context, activeKeyID string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM photo WHERE encryption_key_id <> $1`, activeKeyID).Scan(&n)
	return n, translate("storage.CountPhotosToRekey", err)
}

// RekeyPhotos re-seals with sealer's active key up to limit photos with an
// id above after that are sealed under another key, in id order, and
// writes one audit row (ActionPhotoRekeyed, by actor) for the batch, all in
// one transaction: a batch is re-sealed and audited whole or not at all.
// Each image keeps its message id as additional data, so a ciphertext still
// opens only on its own row. Rows zero means nothing is left above after.
//
// The rows are locked (FOR UPDATE) while the batch runs; the worker only
// inserts photos, so it never waits on them. Resuming needs no state: a
// re-sealed row no longer matches, so a new run starting at after = 0 picks
// up where an interrupted one stopped.
func (s *Store) RekeyPhotos(ctx context.Context, sealer *crypto.Sealer, after int64, limit int, actor string) (RekeyBatch, error) {
	const op = "storage.RekeyPhotos"
	b := RekeyBatch{FromKey: map[string]int{}}
	active := sealer.ActiveKeyID()
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, message_id, encryption_key_id, image_ciphertext FROM photo
			WHERE encryption_key_id <> $1 AND id > $2
			ORDER BY id LIMIT $3 FOR UPDATE`, active, after, limit)
		if err != nil {
			return translate(op, err)
		}
		type row struct {
			id    int64
			msgID uuid.UUID
			keyID string
			ct    []byte
		}
		todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.msgID, &x.keyID, &x.ct)
			return x, err
		})
		if err != nil {
			return translate(op, err)
		}
		if len(todo) == 0 {
			return nil
		}
		batch := &pgx.Batch{}
		for _, x := range todo {
			plain, err := sealer.Open(x.keyID, x.ct, x.msgID[:])
			if err != nil {
				// ErrUnknownKey (a key removed too early) or ErrDecrypt: stop
				// rather than skip, so the operator sees the row.
				return ierr.E(ierr.KindOf(err), op, fmt.Errorf("photo %d (sealed under %q): %w", x.id, x.keyID, err))
			}
			keyID, sealed, err := sealer.Seal(plain, x.msgID[:])
			if err != nil {
				return err
			}
			batch.Queue(`UPDATE photo SET image_ciphertext = $1, encryption_key_id = $2 WHERE id = $3`, sealed, keyID, x.id)
			b.FromKey[x.keyID]++
			b.Rows++
			b.LastID = x.id
		}
		batch.Queue(`
			INSERT INTO audit_log (actor, action, resource, resource_id, details)
			VALUES ($1, $2, 'photo', $3, $4::jsonb)`,
			actor, ActionPhotoRekeyed, strconv.FormatInt(todo[0].id, 10)+"-"+strconv.FormatInt(b.LastID, 10),
			map[string]any{"rows": b.Rows, "first_id": todo[0].id, "last_id": b.LastID, "from_keys": b.FromKey, "to_key": active})
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return translate(op, err)
		}
		return nil
	})
	if err != nil {
		var e *ierr.Error
		if !errors.As(err, &e) {
			err = translate(op, err) // begin or commit
		}
		return RekeyBatch{}, err
	}
	return b, nil
}
