package storage

import (
	"context"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/tracing"
)

// Audit actions, the values of audit_log.action. The *.stored entries are
// written by the Insert methods, passed as a query argument, in the same
// statement as their data row.
const (
	ActionGPSStored       = "gps.stored"
	ActionGyroscopeStored = "gyroscope.stored"
	ActionPhotoStored     = "photo.stored"
	ActionDeadLettered    = "message.dead_lettered"
)

// AuditEntry is one audit_log row written on its own (not with a data row).
type AuditEntry struct {
	Actor      string    // API key name, or "worker" when the message is unreadable
	Action     string    // e.g. ActionDeadLettered
	Resource   string    // table the message was meant for
	ResourceID string    // "" for none
	MessageID  uuid.UUID // uuid.Nil when unknown
	Details    map[string]any
}

// Audit writes an entry. An entry for a message and action that is already
// logged is skipped, so a best-effort entry retried or written by two workers
// stays one row.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	var msgID *uuid.UUID
	if e.MessageID != uuid.Nil {
		msgID = &e.MessageID
	}
	ctx, span := tracing.StartDB(ctx, "INSERT", "audit_log", 0)
	_, err := s.pool.Exec(ctx, `
		INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
		VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6::jsonb)
		ON CONFLICT (message_id, action) WHERE action <> 'photo.viewed' DO NOTHING`,
		e.Actor, e.Action, e.Resource, e.ResourceID, msgID, e.Details)
	err = translate("storage.Audit", err)
	tracing.End(span, err)
	return err
}
