package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// classify names a transport error by what an operator would do about it:
// a short, stable class for the report, never the error text (which holds
// addresses and ports and would make every error its own class).
func classify(err error) string {
	var dns *net.DNSError
	var ne net.Error
	var hostErr x509.HostnameError
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused" // nothing listens at the target
	case errors.Is(err, syscall.ECONNRESET):
		return "reset" // the server (or a proxy) dropped the connection
	case errors.Is(err, syscall.EPIPE):
		return "broken_pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_local_port" // ephemeral ports exhausted: too many new connections
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.As(err, &dns):
		return "dns"
	case errors.As(err, &hostErr), errors.As(err, &unknownCA), errors.As(err, &certErr), errors.As(err, &recErr):
		return "tls"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof" // the server closed the connection before a whole answer
	}
	return "other"
}

// progress writes a line every ProgressEvery until done is closed.
func (r *runner) progress(done <-chan struct{}) {
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()
	lastOK, last := int64(0), time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			ok := r.live.ok.Load()
			phase := ""
			if now.Before(r.recordStart) {
				phase = " warm-up"
			}
			fmt.Fprintf(r.cfg.Progress, "[%6.1fs%s] sent %d  2xx %d (%.0f/s)  not 2xx %d  errors %d  dropped %d  in flight %d\n",
				now.Sub(r.start).Seconds(), phase, r.live.sent.Load(), ok, float64(ok-lastOK)/now.Sub(last).Seconds(),
				r.live.sent.Load()-ok-r.live.errors.Load(), r.live.errors.Load(), r.live.dropped.Load(), r.live.inFlight.Load())
			lastOK, last = ok, now
		}
	}
}
