package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// UnmarshalAs decodes a queue message of reading type T strictly (unknown
// fields and trailing data are an error) and validates it. Every error is
// an *ierr.Error; an Invalid one means the message can never be stored.
func UnmarshalAs[T Reading, P Message[T]](data []byte, lim Limits) (T, error) {
	var v T
	if err := unmarshalInto(P(&v), data, lim); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// Unmarshal is UnmarshalAs for a type known only at run time; the result is
// *Gyroscope, *GPS or *Photo. Code that knows its type uses UnmarshalAs.
func Unmarshal(t Type, data []byte, lim Limits) (any, error) {
	switch t {
	case TypeGyroscope:
		return unmarshalNew[Gyroscope](data, lim)
	case TypeGPS:
		return unmarshalNew[GPS](data, lim)
	case TypePhoto:
		return unmarshalNew[Photo](data, lim)
	}
	return nil, ierr.Errorf(ierr.Invalid, "models.Unmarshal", "unknown telemetry type %q", t)
}

func unmarshalNew[T Reading, P Message[T]](data []byte, lim Limits) (any, error) {
	p := P(new(T))
	if err := unmarshalInto(p, data, lim); err != nil {
		return nil, err // an untyped nil, not a nil *T
	}
	return p, nil
}

func unmarshalInto[T Reading, P Message[T]](p P, data []byte, lim Limits) error {
	if err := decodeMessage(p, data); err != nil {
		return ierr.E(ierr.Invalid, "models.Unmarshal", err)
	}
	return p.Validate(lim)
}

// decodeMessage fills *p (a zero value) from data: through the scanner when
// data is in the encoder's layout (message_scan.go), else strictly through
// encoding/json.
func decodeMessage[T Reading, P Message[T]](p P, data []byte) error {
	if p.scanMessage(data) {
		return nil
	}
	var zero T
	*p = zero // the scanner may have filled some fields
	return strictUnmarshal(data, p)
}

// Marshal encodes a message for the queue.
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, ierr.E(ierr.Internal, "models.Marshal", err)
	}
	return b, nil
}

// strictUnmarshal decodes one JSON value rejecting unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// More() is false before a stray '}' or ']'; only EOF proves the end.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after message")
	}
	return nil
}
