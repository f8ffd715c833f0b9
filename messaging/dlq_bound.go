package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The byte bound of TELEMETRY_DLQ (DLQ_MAX_BYTES). The stream refuses a
// write that would go over it (discard-new); the DLQ writer makes room first
// by purging the oldest dead letters, so the newest evidence is kept and
// every discarded dead letter is counted from the server's own purge reply.
const (
	// dlqPublishAttempts bounds make-room-then-publish for one dead letter:
	// a refusal means another writer used the room first.
	dlqPublishAttempts = 3
	// storeOverhead is about what the file store adds to each message.
	storeOverhead = 64
	// jsErrCodeStreamStoreFailed is nats-server's JSStreamStoreFailedF, which
	// a discard-new stream over its MaxBytes answers ("maximum bytes exceeded").
	jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077
)

// publish writes the dead letter m to TELEMETRY_DLQ, making room for it first.
func (d *DLQ) publish(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	size := storedSize(m)
	for attempt := 1; ; attempt++ {
		if err := d.makeRoom(ctx, size); err != nil {
			return nil, err
		}
		ack, err := d.js.PublishMsg(ctx, m, jetstream.WithExpectStream(DLQStreamName))
		if err == nil || !isDLQFull(err) || attempt == dlqPublishAttempts {
			return ack, err
		}
	}
}

// makeRoom discards the oldest dead letters when one of size bytes would take
// TELEMETRY_DLQ over its bound: down to 7/8 of the bound less size, so that a
// flood purges once per eighth of the bound rather than once per dead letter.
// How many to purge is estimated from the mean size; a shortfall shows as a
// refused publish, and publish comes back here.
func (d *DLQ) makeRoom(ctx context.Context, size int64) error {
	s, err := d.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return err
	}
	info := s.CachedInfo()
	limit, st := info.Config.MaxBytes, info.State
	if limit <= 0 || st.Msgs == 0 || int64(st.Bytes)+size <= limit {
		return nil
	}
	target := max(limit-limit/8-size, 0)
	mean := max(int64(st.Bytes/st.Msgs), 1)
	n := min(uint64((int64(st.Bytes)-target+mean-1)/mean), st.Msgs)
	purged, err := d.purgeOldest(ctx, st.Msgs-n)
	if err != nil {
		return err
	}
	if purged > 0 {
		d.discarded.Add(float64(purged))
		d.log.Warn("TELEMETRY_DLQ is full: the oldest dead letters were discarded to make room (DLQ_MAX_BYTES)",
			"discarded", purged, "dlq_bytes", st.Bytes, "dlq_max_bytes", limit)
	}
	return nil
}

// purgeOldest purges all but the newest keep dead letters (all of them when
// keep is 0) and returns how many the server removed. It speaks the API
// directly because jetstream.Stream.Purge does not return the count.
func (d *DLQ) purgeOldest(ctx context.Context, keep uint64) (uint64, error) {
	req, err := json.Marshal(struct {
		Keep uint64 `json:"keep,omitempty"`
	}{keep})
	if err != nil {
		return 0, err
	}
	resp, err := d.js.Conn().RequestWithContext(ctx, apiPrefix(d.js)+"STREAM.PURGE."+DLQStreamName, req)
	if err != nil {
		return 0, err
	}
	var r struct {
		Purged uint64              `json:"purged"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, err
	}
	if r.Error != nil {
		return 0, r.Error
	}
	return r.Purged, nil
}

// apiPrefix is the JetStream API prefix js sends its requests to.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}

func isDLQFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStreamStoreFailed &&
		strings.Contains(apiErr.Description, "maximum bytes")
}

// storedSize is about what m takes in the stream.
func storedSize(m *nats.Msg) int64 {
	n := len(m.Subject) + len(m.Data) + storeOverhead + len("NATS/1.0\r\n\r\n")
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return int64(n)
}
