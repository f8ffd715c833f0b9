package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/uuidv7"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// RouteBatch is the batch ingest route (SPEC §2).
const RouteBatch = "POST /telemetry/batch"

const (
	// BatchBodyLimit is the largest batch body read.
	BatchBodyLimit = 1 << 20
	// MaxBatchReadings is the most readings a batch holds.
	MaxBatchReadings = 1000
	// maxDetailedRejections is how many rejected readings list all their
	// errors (at most models.MaxFieldErrors each); later ones list the
	// first and count the rest, so an answer stays a few hundred KiB.
	maxDetailedRejections = 100
)

// BatchResult is the answer to a batch: each reading's id or errors, in order.
type BatchResult struct {
	Accepted int               `json:"accepted"`
	Rejected int               `json:"rejected"`
	Results  []BatchResultItem `json:"results"`
}

// BatchResultItem is one reading's outcome: its id, or its errors (and how
// many more were not listed).
type BatchResultItem struct {
	ID         string            `json:"id,omitempty"`
	Errors     []ierr.FieldError `json:"errors,omitempty"`
	MoreErrors int               `json:"more_errors,omitempty"`
}

var errNotAcknowledged = ierr.FieldError{Field: "", Message: "The message queue did not acknowledge this reading: it may not be stored. Retry the batch with the same Idempotency-Key."}

// batch serves POST /telemetry/batch: a JSON array or NDJSON lines of
// gyroscope and GPS readings, validated one by one, the valid ones
// published at once; the answer waits for every acknowledgement.
func (h *ingest) batch(w http.ResponseWriter, r *http.Request) {
	now, key, err := h.begin(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	mt, _, err := mediaType(r)
	if err == nil && mt != "application/json" && mt != "application/x-ndjson" {
		err = fieldProblem(ierr.Unsupported, "", "Content-Type must be application/json or application/x-ndjson.")
	}
	if err != nil {
		w.Header().Set("Accept-Post", "application/json, application/x-ndjson")
		writeError(w, r, err)
		return
	}
	elems, err := decodeJSON(w, r, h.pace, BatchBodyLimit, func(body io.Reader) ([][]byte, error) {
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		if mt == "application/x-ndjson" {
			return splitNDJSON(b)
		}
		return splitArray(b)
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	info := infoFrom(r.Context())
	if info == nil || info.keyName == "" {
		writeError(w, r, ierr.Errorf(ierr.Internal, "handlers.batch", "route %s reached without an authenticated key", r.URL.Path))
		return
	}

	res := BatchResult{Results: make([]BatchResultItem, len(elems))}
	msgs := make([]message, len(elems))
	limited := map[string]bool{}
	for i, raw := range elems {
		v, err := models.DecodeBatchReading(raw, now, h.lim)
		if err != nil {
			res.Results[i] = rejection(err, res.Rejected)
			res.Rejected++
			continue
		}
		meta := v.Envelope()
		meta.Actor = info.keyName
		if !limited[meta.DeviceID] { // one token per device and batch
			limited[meta.DeviceID] = true
			if err := h.limitDevice(w, info, meta.DeviceID); err != nil {
				writeError(w, r, err)
				return
			}
		}
		msgs[i] = v
	}
	if res.Rejected == len(elems) {
		writeJSON(w, http.StatusBadRequest, res)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.requestTimeout)
	defer cancel()
	ids, replayed, err := h.batchIDs(ctx, info.keyName, key, msgs)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Every valid reading is published at once and the answer waits for
	// every ack. Nats-Msg-Id only with a key, as for a single reading
	// (accept): a retried batch reuses its derived ids.
	out := make([]messaging.Outgoing, 0, len(msgs))
	for i, msg := range msgs {
		if msg == nil {
			continue
		}
		meta := msg.Envelope()
		meta.MessageID = ids[i]
		meta.ReceivedAt = now
		data, err := encode(msg)
		if err != nil {
			writeError(w, r, err)
			return
		}
		o := messaging.Outgoing{Subject: msg.Type().Subject(), Data: data}
		if key != "" {
			o.MsgID = ids[i].String()
		}
		out = append(out, o)
	}
	// Each reading's publish latency is observed as the batch's: the time
	// until its ack, and every ack before it, was in.
	start := time.Now()
	errs := h.pub.PublishAll(ctx, out)
	took := time.Since(start)
	failed := make([]bool, len(msgs))
	for i, j := 0, 0; i < len(msgs); i++ {
		if msgs[i] == nil {
			continue
		}
		failed[i] = errs[j] != nil
		h.m.observePublish(msgs[i].Type(), !failed[i], took)
		j++
	}
	status, unacked := http.StatusAccepted, 0
	for i, msg := range msgs {
		switch {
		case msg == nil:
		case failed[i]:
			res.Results[i] = BatchResultItem{Errors: []ierr.FieldError{errNotAcknowledged}}
			res.Rejected++
			unacked++
			status = http.StatusServiceUnavailable
		default:
			res.Results[i] = BatchResultItem{ID: ids[i].String()}
			res.Accepted++
		}
	}
	if status == http.StatusServiceUnavailable {
		info.err = ierr.Errorf(ierr.Unavailable, "handlers.batch", "%d of %d readings not acknowledged", unacked, len(out))
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	} else if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, res)
}

// rejection is the result of a reading that failed validation; n is how
// many were rejected before it.
func rejection(err error, n int) BatchResultItem {
	fields, more := listedFields(err)
	if len(fields) == 0 {
		fields = []ierr.FieldError{{Field: "", Message: clientDetail(err, 0)}}
	}
	if n >= maxDetailedRejections && len(fields) > 1 {
		more += len(fields) - 1
		fields = fields[:1]
	}
	return BatchResultItem{Errors: fields, MoreErrors: more}
}

// batchIDs gives each valid reading its message id. Without a key they
// are fresh UUIDv7s. With one, the batch claims a base id under the key
// (fingerprinted by every reading) and reading i's id is derived from the
// base id and i: a retried batch gets the same ids, so JetStream drops
// every reading already stored (SPEC §2).
func (h *ingest) batchIDs(ctx context.Context, actor, key string, msgs []message) ([]uuid.UUID, bool, error) {
	ids := make([]uuid.UUID, len(msgs))
	if key == "" {
		for i, msg := range msgs {
			if msg == nil {
				continue
			}
			ids[i] = uuidv7.New()
		}
		return ids, false, nil
	}
	fp := sha256.New()
	for i, msg := range msgs {
		fp.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
		if msg == nil {
			fp.Write([]byte{0})
			continue
		}
		if err := digest(fp, msg); err != nil {
			return nil, false, err
		}
	}
	base := uuidv7.New()
	got, err := h.pub.ClaimIdempotencyKey(ctx, actor, "batch", key, base.String(), hex.EncodeToString(fp.Sum(nil)))
	if err != nil {
		return nil, false, err
	}
	replayed := got != base.String()
	if base, err = uuid.Parse(got); err != nil {
		return nil, false, ierr.E(ierr.Internal, "handlers.batchIDs: stored idempotency id", err)
	}
	for i, msg := range msgs {
		if msg != nil {
			ids[i] = derivedID(base, i)
		}
	}
	return ids, replayed, nil
}

// derivedID is reading i's id in the batch whose base id is base: a
// UUIDv7 with base's timestamp and random bits hashed from base and i.
func derivedID(base uuid.UUID, i int) uuid.UUID {
	sum := sha256.Sum256(binary.BigEndian.AppendUint32(base[:], uint32(i)))
	var id uuid.UUID
	copy(id[:6], base[:6])
	copy(id[6:], sum[:10])
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id
}

// splitArray cuts a JSON array into its elements (not yet decoded).
func splitArray(b []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fieldProblem(ierr.Invalid, "", "The body must be a JSON array of readings (or application/x-ndjson lines).")
	}
	var elems [][]byte
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fieldProblem(ierr.Invalid, "", "The body is not a well-formed JSON array.")
		}
		if len(elems) == MaxBatchReadings {
			return nil, tooManyReadings()
		}
		elems = append(elems, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fieldProblem(ierr.Invalid, "", "The body is not a well-formed JSON array.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fieldProblem(ierr.Invalid, "", "The body must hold exactly one JSON array (trailing data found).")
	}
	return nonEmpty(elems)
}

// splitNDJSON cuts NDJSON into its lines; blank lines are skipped.
func splitNDJSON(b []byte) ([][]byte, error) {
	var elems [][]byte
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		b = rest
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		if len(elems) == MaxBatchReadings {
			return nil, tooManyReadings()
		}
		elems = append(elems, line)
	}
	return nonEmpty(elems)
}

func nonEmpty(elems [][]byte) ([][]byte, error) {
	if len(elems) == 0 {
		return nil, fieldProblem(ierr.Invalid, "", "The batch holds no readings.")
	}
	return elems, nil
}

func tooManyReadings() error {
	return fieldProblem(ierr.TooLarge, "", "A batch holds at most "+strconv.Itoa(MaxBatchReadings)+" readings.")
}
