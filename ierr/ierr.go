// Package ierr holds the typed error that crosses package boundaries.
//
// An *Error carries a Kind (what the caller should do about it), the operation
// that failed and the wrapped cause. The HTTP edge maps kinds to status codes in
// one place (handlers) and the worker maps kinds to Ack / NakWithDelay / Term in
// one place (worker); everything in between only wraps.
package ierr

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error by what the caller should do about it.
type Kind int

const (
	// Internal is a bug or an unexpected state; never retried blindly by clients.
	Internal Kind = iota
	// Invalid input: the request or message can never succeed as it is.
	Invalid
	// TooLarge input: a body or image over its limit.
	TooLarge
	// Unsupported media: the content is not of an accepted type.
	Unsupported
	// Unavailable: a dependency is down, full or throttling; retry later.
	Unavailable
	// Unauthenticated: missing or wrong credentials.
	Unauthenticated
	// Forbidden: valid credentials without the needed permission.
	Forbidden
	// Conflict: the request collides with an earlier one (e.g. idempotency key reuse).
	Conflict
	// NotFound: the thing asked for does not exist.
	NotFound
	// Misconfigured: the deployment is wrong (missing collection, denied access);
	// retried with back-off and surfaced to operators, never blamed on the input.
	Misconfigured
)

var kindNames = [...]string{
	Internal:        "internal",
	Invalid:         "invalid",
	TooLarge:        "too_large",
	Unsupported:     "unsupported",
	Unavailable:     "unavailable",
	Unauthenticated: "unauthenticated",
	Forbidden:       "forbidden",
	Conflict:        "conflict",
	NotFound:        "not_found",
	Misconfigured:   "misconfigured",
}

func (k Kind) String() string {
	if int(k) >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// FieldError names one invalid field of a request or message.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the typed error that crosses layers.
type Error struct {
	Kind   Kind
	Op     string       // operation that failed, e.g. "storage.InsertGPS"
	Err    error        // cause; may be nil
	Fields []FieldError // for Invalid: each failing field
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteString(" ")
		b.WriteString(f.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an *Error of kind k for operation op wrapping err.
func E(k Kind, op string, err error) *Error {
	return &Error{Kind: k, Op: op, Err: err}
}

// Errorf builds an *Error of kind k with a formatted cause.
func Errorf(k Kind, op, format string, args ...any) *Error {
	return &Error{Kind: k, Op: op, Err: fmt.Errorf(format, args...)}
}

// InvalidFields builds an Invalid error listing each failing field.
func InvalidFields(op string, fields []FieldError) *Error {
	return &Error{Kind: Invalid, Op: op, Fields: fields}
}

// KindOf reports the kind of the outermost *Error in err's chain, or Internal
// when there is none. A nil error has no kind; KindOf(nil) is Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// FieldsOf returns the field errors carried by err's chain, if any.
func FieldsOf(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// Is reports whether err's chain holds an *Error of kind k.
func Is(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}
