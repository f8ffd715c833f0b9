package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// BatchReading is one decoded reading of a batch: *Gyroscope or *GPS.
type BatchReading interface {
	Type() Type
	Envelope() *Meta
}

// Batch fields: each reading type's request fields and its "type".
var (
	batchGyroscopeFields = append(slices.Clip(gyroscopeFields), "type")
	batchGPSFields       = append(slices.Clip(gpsFields), "type")
)

// DecodeBatchReading decodes one element of a batch body (SPEC §2): a flat
// JSON object whose "type" is "gyroscope" or "gps", and otherwise the body
// of that type's single route, validated the same way. The error is an
// *ierr.Error of kind Invalid, as Decode's.
func DecodeBatchReading(raw []byte, now time.Time, lim Limits) (BatchReading, error) {
	const op = "models.DecodeBatchReading"
	var head struct {
		Type json.RawMessage `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, ierr.E(ierr.Invalid, op, errors.New("each reading must be a JSON object"))
	}
	var t string
	if head.Type == nil || json.Unmarshal(head.Type, &t) != nil || (t != string(TypeGyroscope) && t != string(TypeGPS)) {
		return nil, &ierr.Error{Kind: ierr.Invalid, Op: op, Fields: []ierr.FieldError{{
			Field: "type", Message: `is required: "gyroscope" or "gps"`}}}
	}
	if Type(t) == TypeGyroscope {
		v, err := decodeBatched[Gyroscope](raw, now, lim, batchGyroscopeFields)
		return v, err
	}
	v, err := decodeBatched[GPS](raw, now, lim, batchGPSFields)
	return v, err
}

// decodeBatched is Decode of one batch element whose keys may include "type".
func decodeBatched[T Reading, P Message[T]](raw []byte, now time.Time, lim Limits, fields []string) (P, error) {
	var p P
	op, _ := p.request()
	obj, keys, err := decodeObject(bytes.NewReader(raw), fields...)
	if err != nil {
		return nil, ierr.E(ierr.Invalid, op, err)
	}
	delete(obj, "type")
	var fe fieldErrors
	var m Meta
	m.DeviceID, m.RecordedAt = obj.meta(now, lim, &fe)
	v, err := p.fromRequest(op, obj, m, lim, fe)
	if err = keys.Join(op, err); err != nil {
		return nil, err
	}
	return P(&v), nil
}
