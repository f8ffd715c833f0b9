package config

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogFormat is how records are written: one JSON object or one logfmt-like
// text line per record.
type LogFormat string

// The formats LOG_FORMAT accepts. The deployed binaries default to JSON
// (what log shippers parse); the dev stack defaults to text (what a person
// in a terminal reads).
const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// Log is the logging configuration of a binary or subcommand.
type Log struct {
	Level  slog.Level
	Format LogFormat
}

// LoadLog reads LOG_LEVEL and LOG_FORMAT; def is the format when LOG_FORMAT
// is unset. The error names the wrong variable.
func LoadLog(getenv Getenv, def LogFormat) (Log, error) {
	e := &env{get: getenv}
	l := Log{Level: e.logLevel(), Format: e.logFormat(def)}
	if err := e.err(); err != nil {
		return Log{}, fmt.Errorf("log configuration: %w", err)
	}
	return l, nil
}

func (e *env) logFormat(def LogFormat) LogFormat {
	v := strings.ToLower(e.str("LOG_FORMAT", string(def)))
	switch f := LogFormat(v); f {
	case LogJSON, LogText:
		return f
	}
	e.fail("LOG_FORMAT", "must be json or text, got %q", v)
	return def
}

// Logger returns a logger writing one record per line to w in l's format,
// at l's level and above.
func (l Log) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
