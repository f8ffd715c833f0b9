package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// DeadLetterInfo describes one dead letter in TELEMETRY_DLQ, read from its
// Dlq-* headers.
type DeadLetterInfo struct {
	Sequence         uint64 // in TELEMETRY_DLQ; what ReplayDeadLetter takes
	Subject          string // in TELEMETRY_DLQ, e.g. dlq.telemetry.gps
	OriginalSubject  string // Dlq-Original-Subject, e.g. telemetry.gps
	Reason           string // Dlq-Reason
	OriginalSequence uint64 // Dlq-Original-Stream-Sequence: its sequence in TELEMETRY
	Deliveries       uint64 // Dlq-Delivery-Count
	DeadLetteredAt   time.Time
	Size             int         // payload bytes
	Type             models.Type // from Subject; "" for a subject outside dlq.telemetry.*
	// MessageID is the body's message_id, the key the worker stores a
	// reading under; "" when the body does not carry one.
	MessageID string
}

// DeadLetter is one dead letter whole: its description, every header and
// the body as it was published to TELEMETRY.
type DeadLetter struct {
	DeadLetterInfo
	Header nats.Header
	Data   []byte
}

// DeadLetterFilter selects dead letters; the zero value selects them all.
type DeadLetterFilter struct {
	Type   models.Type // "" for every type
	Reason string      // substring of Dlq-Reason, case-insensitive; "" for any
	Since  time.Time   // dead-lettered at or after; zero for no bound
	Until  time.Time   // dead-lettered before; zero for no bound
}

// Matches reports whether d passes every condition of f.
func (f DeadLetterFilter) Matches(d DeadLetterInfo) bool {
	switch {
	case f.Type != "" && d.Type != f.Type,
		f.Reason != "" && !strings.Contains(strings.ToLower(d.Reason), strings.ToLower(f.Reason)),
		!f.Since.IsZero() && d.DeadLetteredAt.Before(f.Since),
		!f.Until.IsZero() && !d.DeadLetteredAt.Before(f.Until):
		return false
	}
	return true
}

// IsZero reports whether f selects every dead letter.
func (f DeadLetterFilter) IsZero() bool { return f == DeadLetterFilter{} }

// replayMsgIDPrefix starts the Nats-Msg-Id of a replayed dead letter.
const replayMsgIDPrefix = "replay-" + DLQStreamName + "-"

// ListDeadLetters returns up to limit dead letters, oldest first. It reads
// TELEMETRY_DLQ by sequence, asking the server each time for the next stored
// message at or after a sequence, so the gaps replays leave cost nothing.
// Each message is fetched whole (a photo's is ~8 MiB): keep limit modest.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetterInfo, error) {
	return FindDeadLetters(ctx, js, DeadLetterFilter{}, limit)
}

// FindDeadLetters returns up to limit dead letters that f matches, oldest
// first, read as ListDeadLetters reads them. A type filter asks the server
// for that type's subject only; the other conditions are checked here, so a
// narrow filter over a large DLQ fetches every message it passes over.
func FindDeadLetters(ctx context.Context, js jetstream.JetStream, f DeadLetterFilter, limit int) ([]DeadLetterInfo, error) {
	const op = "messaging.FindDeadLetters"
	if limit < 1 {
		return nil, ierr.Errorf(ierr.Invalid, op, "limit must be at least 1, not %d", limit)
	}
	stream, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return nil, translate(op, err)
	}
	state := stream.CachedInfo().State
	var out []DeadLetterInfo
	if state.Msgs == 0 {
		return out, nil
	}
	subject := DLQSubjectPrefix + "*"
	if f.Type != "" {
		subject = DLQSubject(f.Type)
	}
	for seq := max(state.FirstSeq, 1); seq <= state.LastSeq && len(out) < limit; {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // nothing stored at or after seq
		}
		if err != nil {
			return nil, translate(op, err)
		}
		if raw.Sequence > state.LastSeq {
			break // dead-lettered after the listing began
		}
		if d := deadLetterInfo(raw); f.Matches(d) {
			out = append(out, d)
		}
		seq = raw.Sequence + 1
	}
	return out, nil
}

// GetDeadLetter returns the dead letter at sequence seq of TELEMETRY_DLQ;
// a NotFound error when there is none.
func GetDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	const op = "messaging.GetDeadLetter"
	if seq == 0 {
		return DeadLetter{}, ierr.Errorf(ierr.Invalid, op, "sequence must be at least 1")
	}
	stream, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return DeadLetter{}, translate(op, err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, translate(fmt.Sprintf("%s: dead letter %d", op, seq), err)
	}
	return DeadLetter{DeadLetterInfo: deadLetterInfo(raw), Header: raw.Header, Data: raw.Data}, nil
}

// PurgeDeadLetter deletes the dead letter at sequence seq of TELEMETRY_DLQ
// for good and returns what it was; a NotFound error when there is none
// (purged or replayed by someone else meanwhile).
func PurgeDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetterInfo, error) {
	const op = "messaging.PurgeDeadLetter"
	d, err := GetDeadLetter(ctx, js, seq)
	if err != nil {
		return DeadLetterInfo{}, err
	}
	stream, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return d.DeadLetterInfo, translate(op, err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		return d.DeadLetterInfo, translate(fmt.Sprintf("%s: dead letter %d", op, seq), err)
	}
	return d.DeadLetterInfo, nil
}

// ReplayDeadLetter puts the dead letter at sequence seq of TELEMETRY_DLQ
// back on TELEMETRY, on its original subject and with its original body and
// headers (less the Dlq-* ones and JetStream's own Nats-* ones), and, only
// once TELEMETRY has acknowledged it, deletes it from TELEMETRY_DLQ. Fix the
// cause first: a message that fails again is dead-lettered again, under a
// new sequence.
//
// Replaying is safe. The worker stores each message_id (in the body) once,
// so a message whose reading was in fact stored is only counted as a
// duplicate. The replay is published with Nats-Msg-Id
// ReplayMsgID(seq, stored), so a replay repeated within the duplicate
// window (two operators, or a retry after the delete failed) puts it on
// TELEMETRY once. A dead letter that is gone is a NotFound error; one whose
// Dlq-Original-Subject is not a telemetry subject is refused as Invalid.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetterInfo, error) {
	const op = "messaging.ReplayDeadLetter"
	if seq == 0 {
		return DeadLetterInfo{}, ierr.Errorf(ierr.Invalid, op, "sequence must be at least 1")
	}
	stream, err := js.Stream(ctx, DLQStreamName)
	if err != nil {
		return DeadLetterInfo{}, translate(op, err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetterInfo{}, translate(fmt.Sprintf("%s: dead letter %d", op, seq), err)
	}
	info := deadLetterInfo(raw)
	if !isTelemetrySubject(info.OriginalSubject) {
		return info, ierr.Errorf(ierr.Invalid, op, "dead letter %d has %s %q, not a telemetry subject (%s); not replayed",
			seq, HeaderDLQSubject, info.OriginalSubject, strings.Join(telemetrySubjects(), ", "))
	}
	hdr := nats.Header{}
	for k, v := range raw.Header {
		// Dlq-* describe the dead letter; Nats-* are JetStream's controls
		// (the dead letter's own Nats-Msg-Id, Nats-Expected-Stream, …).
		if hasPrefixFold(k, "Dlq-") || hasPrefixFold(k, "Nats-") {
			continue
		}
		hdr[k] = v
	}
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: info.OriginalSubject, Header: hdr, Data: raw.Data},
		jetstream.WithMsgID(ReplayMsgID(seq, raw.Time)),
		jetstream.WithExpectStream(StreamName))
	if err != nil {
		return info, translate(fmt.Sprintf("%s: dead letter %d: publishing to %s", op, seq, info.OriginalSubject), err)
	}
	// Published: finish the job even if the caller gives up now (Ctrl-C).
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterPublishTimeout)
	defer cancel()
	if err := stream.DeleteMsg(dctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return info, translate(fmt.Sprintf("%s: dead letter %d is back on %s but still in %s (replaying it again within the duplicate window is deduplicated)",
			op, seq, info.OriginalSubject, DLQStreamName), err)
	}
	return info, nil
}

// deadLetterInfo reads a dead letter's headers. Missing or garbled headers
// read as zero values; the time falls back to when the DLQ stored it.
func deadLetterInfo(raw *jetstream.RawStreamMsg) DeadLetterInfo {
	h := raw.Header
	info := DeadLetterInfo{
		Sequence:        raw.Sequence,
		Subject:         raw.Subject,
		OriginalSubject: h.Get(HeaderDLQSubject),
		Reason:          h.Get(HeaderDLQReason),
		DeadLetteredAt:  raw.Time,
		Size:            len(raw.Data),
		MessageID:       bodyMessageID(raw.Data),
	}
	if t := models.Type(strings.TrimPrefix(raw.Subject, DLQSubjectPrefix)); isTelemetrySubject(t.Subject()) {
		info.Type = t
	}
	info.OriginalSequence, _ = strconv.ParseUint(h.Get(HeaderDLQStreamSequence), 10, 64)
	info.Deliveries, _ = strconv.ParseUint(h.Get(HeaderDLQDeliveries), 10, 64)
	if at, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDLQDeadLetteredAt)); err == nil {
		info.DeadLetteredAt = at
	}
	return info
}

// bodyMessageID reads message_id from a message body, ignoring every other
// field; "" when the body is not a JSON object with a string message_id.
func bodyMessageID(data []byte) string {
	var m struct {
		MessageID string `json:"message_id"`
	}
	if json.Unmarshal(data, &m) != nil {
		return ""
	}
	return m.MessageID
}

func isTelemetrySubject(s string) bool {
	for _, t := range models.Types {
		if s == t.Subject() {
			return true
		}
	}
	return false
}

func telemetrySubjects() []string {
	out := make([]string, 0, len(models.Types))
	for _, t := range models.Types {
		out = append(out, t.Subject())
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// ReplayMsgID is the Nats-Msg-Id of the replay of dead letter seq, stored in
// the DLQ at stored: the time tells apart dead letters of a DLQ stream that
// was deleted and recreated (its sequences start again at 1).
func ReplayMsgID(seq uint64, stored time.Time) string {
	return replayMsgIDPrefix + strconv.FormatUint(seq, 10) + "-" + strconv.FormatInt(stored.UnixNano(), 10)
}
