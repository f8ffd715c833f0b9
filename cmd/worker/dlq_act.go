package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/storage"
)

// The audit_log actions of the dlq commands. The rows carry no message_id
// column (it is in details): a message may be dead-lettered, replayed and
// dead-lettered again, and audit_log keeps one row per message and action.
const (
	actionReplayed = "message.replayed"
	actionPurged   = "message.purged"
)

// dbOpenTimeout bounds reaching PostgreSQL for the audit, before anything
// is done: a command that promised an audit acts only once it can write it.
const dbOpenTimeout = 10 * time.Second

// dlqAct runs a parsed replay or purge.
func dlqAct(ctx context.Context, e dlqEnv, a action) int {
	cmd := "worker dlq " + a.verb
	actor := a.actor
	if actor == "" {
		u, err := user.Current()
		if err != nil || u.Username == "" {
			fmt.Fprintf(e.errOut, "%s: cannot tell who you are from the system; name yourself with -actor\n", cmd)
			return exitUsage
		}
		actor = u.Username
	}
	var store *storage.Store
	if e.cfg.DatabaseURL != "" && (a.verb == "replay" || a.yes) {
		octx, cancel := context.WithTimeout(ctx, dbOpenTimeout)
		s, err := storage.Open(octx, e.cfg.DatabaseURL)
		cancel()
		if err != nil {
			fmt.Fprintf(e.errOut, "%s: cannot reach PostgreSQL (DATABASE_URL) to audit it, so nothing was done; fix the database or unset DATABASE_URL (%s)\n",
				cmd, dbProblem(err))
			return exitFail
		}
		defer s.Close()
		store = s
	}

	var targets []messaging.DeadLetterInfo
	failed := 0
	if a.all {
		list, err := messaging.FindDeadLetters(ctx, e.js, a.filter, a.n)
		if err != nil {
			fmt.Fprintf(e.errOut, "%s: %s\n", cmd, explain(0, err))
			return exitFail
		}
		if len(list) == 0 {
			fmt.Fprintln(e.out, "no dead letters match")
			return exitOK
		}
		targets = list
	} else {
		for _, seq := range a.seqs {
			targets = append(targets, messaging.DeadLetterInfo{Sequence: seq})
		}
	}

	if a.verb == "purge" && !a.yes {
		return dryRunPurge(ctx, e, a, targets)
	}

	log := e.cfg.Log.Logger(e.errOut)
	past := a.verb + "ed" // replayed
	if a.verb == "purge" {
		past = "purged"
	}
	unaudited := 0
	for i, t := range targets {
		var d messaging.DeadLetterInfo
		var err error
		if a.verb == "replay" {
			d, err = messaging.ReplayDeadLetter(ctx, e.js, t.Sequence)
		} else {
			d, err = messaging.PurgeDeadLetter(ctx, e.js, t.Sequence)
		}
		if err != nil {
			failed++
			fmt.Fprintf(e.errOut, "%s: %s\n", cmd, explain(t.Sequence, err))
			if ierr.Is(err, ierr.Unavailable) || errors.Is(err, jetstream.ErrStreamNotFound) {
				failed += len(targets) - i - 1 // NATS is down, the stream full or missing: the rest would fail too
				break
			}
			continue
		}
		if a.verb == "replay" {
			fmt.Fprintf(e.out, "replayed %d to %s (%d bytes, was TELEMETRY sequence %d)\n", d.Sequence, d.OriginalSubject, d.Size, d.OriginalSequence)
		} else {
			fmt.Fprintf(e.out, "purged %d (%s, %d bytes, was TELEMETRY sequence %d)\n", d.Sequence, d.OriginalSubject, d.Size, d.OriginalSequence)
		}
		audited := false
		if store != nil {
			if err := audit(ctx, store, a.verb, actor, d); err != nil {
				unaudited++
				fmt.Fprintf(e.errOut, "%s: dead letter %d was %s but its audit row could not be written (%s)\n", cmd, d.Sequence, past, dbProblem(err))
			} else {
				audited = true
			}
		}
		log.Info("dead letter "+past, "seq", d.Sequence, "type", string(d.Type), "message_id", d.MessageID,
			"original_subject", d.OriginalSubject, "original_sequence", d.OriginalSequence,
			"reason", d.Reason, "actor", actor, "audited", audited)
	}
	if failed > 0 {
		fmt.Fprintf(e.errOut, "%s: %d of %d not %s\n", cmd, failed, len(targets), past)
	}
	if unaudited > 0 {
		fmt.Fprintf(e.errOut, "%s: %d %s without their audit row; the log above records them\n", cmd, unaudited, past)
	}
	if failed > 0 || unaudited > 0 {
		return exitFail
	}
	return exitOK
}

// dryRunPurge shows what purge would delete and exits 2: deleting for good
// needs -yes, and a script that forgot it must not read success.
func dryRunPurge(ctx context.Context, e dlqEnv, a action, targets []messaging.DeadLetterInfo) int {
	var found []messaging.DeadLetterInfo
	missing := 0
	if a.all {
		found = targets
	} else {
		for _, t := range targets {
			d, err := messaging.GetDeadLetter(ctx, e.js, t.Sequence)
			if err != nil {
				missing++
				fmt.Fprintf(e.errOut, "worker dlq purge: %s\n", explain(t.Sequence, err))
				continue
			}
			found = append(found, d.DeadLetterInfo)
		}
	}
	if len(found) > 0 {
		if err := writeDeadLetters(e.out, found); err != nil {
			fmt.Fprintf(e.errOut, "worker dlq purge: %v\n", err)
			return exitFail
		}
	}
	if missing > 0 {
		return exitFail
	}
	fmt.Fprintf(e.errOut, "worker dlq purge: would purge these %d dead letters; nothing was deleted. Run it again with -yes to purge them.\n", len(found))
	return exitUsage
}

// audit writes the audit_log row of one replay or purge.
func audit(ctx context.Context, s *storage.Store, verb, actor string, d messaging.DeadLetterInfo) error {
	action := actionReplayed
	if verb == "purge" {
		action = actionPurged
	}
	details := map[string]any{
		"stream":            messaging.DLQStreamName,
		"original_subject":  d.OriginalSubject,
		"original_sequence": d.OriginalSequence,
		"reason":            d.Reason,
		"deliveries":        d.Deliveries,
		"size_bytes":        d.Size,
	}
	if d.MessageID != "" {
		details["message_id"] = d.MessageID
	}
	resource := "dead_letter"
	if d.Type != "" {
		details["type"] = string(d.Type)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbOpenTimeout)
	defer cancel()
	return s.Audit(actx, storage.AuditEntry{
		Actor:      actor,
		Action:     action,
		Resource:   resource,
		ResourceID: strconv.FormatUint(d.Sequence, 10),
		MessageID:  uuid.Nil,
		Details:    details,
	})
}

// dbProblem is the short cause of a database error: its kind's words and
// the driver's, never the DSN (pgx redacts the password from its errors).
func dbProblem(err error) string {
	var e *ierr.Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err.Error()
	}
	return err.Error()
}
