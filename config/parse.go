package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The readers of env, shared by every loader. Each returns the default (or
// the zero value) after recording an error that names the variable.

func (e *env) str(name, def string) string {
	if v := strings.TrimSpace(e.get(name)); v != "" {
		return v
	}
	return def
}

func (e *env) required(name string) string {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		e.fail(name, "is required")
	}
	return v
}

func (e *env) int(name string, def, min, max int) int {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e.fail(name, "must be an integer between %d and %d, got %q", min, max, v)
		return def
	}
	return n
}

func (e *env) float(name string, def, min, max float64) float64 {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < min || f > max || f != f {
		e.fail(name, "must be a number between %g and %g, got %q", min, max, v)
		return def
	}
	return f
}

func (e *env) duration(name string, def, min time.Duration) time.Duration {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		e.fail(name, "must be a duration of at least %s (e.g. 30s, 5m), got %q", min, v)
		return def
	}
	return d
}

// durations reads a comma-separated list of at most max durations.
func (e *env) durations(name, def string, max int) []time.Duration {
	v := e.str(name, def)
	d, err := parseDurations(v, max)
	if err != nil {
		e.fail(name, "%v, got %q", err, v)
		d, _ = parseDurations(def, max)
	}
	return d
}

func parseDurations(s string, max int) ([]time.Duration, error) {
	parts := strings.Split(s, ",")
	if len(parts) > max {
		return nil, fmt.Errorf("must list at most %d delays", max)
	}
	out := make([]time.Duration, 0, len(parts))
	for _, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d < time.Millisecond {
			return nil, fmt.Errorf("must be a comma-separated list of durations of at least 1ms (e.g. 1s,5s,30s)")
		}
		out = append(out, d)
	}
	return out, nil
}

func (e *env) bytes(name string, def int64) int64 {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	n, err := parseBytes(v)
	if err != nil || n <= 0 {
		e.fail(name, "must be a positive size such as 512MiB, 10GiB or 1048576, got %q", v)
		return def
	}
	return n
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			return n * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func (e *env) logLevel() slog.Level {
	var l slog.Level
	v := e.str("LOG_LEVEL", "info")
	if err := l.UnmarshalText([]byte(v)); err != nil {
		e.fail("LOG_LEVEL", "must be debug, info, warn or error, got %q", v)
	}
	return l
}

// addr reads a listen address host:port (host may be empty).
func (e *env) addr(name, def string) string {
	v := e.str(name, def)
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		e.fail(name, "must be host:port or :port, got %q", v)
		return v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.fail(name, "port must be a number between 0 and 65535, got %q", v)
	}
	return v
}

// natsURL reads a NATS URL or a comma-separated list of them. Errors never
// echo the value: it may carry credentials.
func (e *env) natsURL(name, def string) string {
	v := e.str(name, def)
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			e.fail(name, "entry %d is empty", i+1)
			continue
		}
		if !strings.Contains(part, "://") {
			part = "nats://" + part
		}
		u, err := url.Parse(part)
		if err != nil || u.Host == "" {
			e.fail(name, "entry %d is not a URL such as nats://host:4222", i+1)
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			e.fail(name, "entry %d has scheme %q; use nats, tls, ws or wss", i+1, u.Scheme)
		}
	}
	return v
}

// databaseURL reads a required PostgreSQL DSN (URL or key=value form).
func (e *env) databaseURL(name string) string {
	v := e.required(name)
	if v != "" {
		if _, err := pgx.ParseConfig(v); err != nil {
			// The parse error may quote the DSN; name the variable only.
			e.fail(name, "is not a valid PostgreSQL URL or key=value connection string")
		}
	}
	return v
}

// httpURL reads an optional http or https URL ("" when unset). Like
// natsURL, errors do not echo the value, which could carry credentials.
func (e *env) httpURL(name string) string {
	v := e.str(name, "")
	if v == "" {
		return ""
	}
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.fail(name, "must be an http or https URL such as http://127.0.0.1:4566")
	}
	return v
}

// prefixes reads a comma-separated list of CIDR prefixes or single
// addresses (a bare address is its own /32 or /128).
func (e *env) prefixes(name string) []netip.Prefix {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		var p netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			p, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(part); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			e.fail(name, "entry %d must be a CIDR prefix such as 10.0.0.0/8 or an IP address, got %q", i+1, part)
			continue
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
		}
		out = append(out, p)
	}
	return out
}
