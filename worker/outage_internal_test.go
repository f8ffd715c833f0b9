package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Which failures make the worker ask the database, and when the answer
// pauses it.
func TestOutageObserve(t *testing.T) {
	timeout := ierr.Errorf(ierr.Unavailable, "storage.InsertGPS", "statement timeout")
	refused := ierr.E(ierr.Unavailable, "storage.InsertGPS", fmt.Errorf("%w: connection refused", storage.ErrUnreachable))
	throttled := ierr.Errorf(ierr.Unavailable, "rekognition.SearchFacesByImage", "throttled")
	invalid := ierr.Errorf(ierr.Invalid, "models.Unmarshal", "bad json")
	tests := []struct {
		name     string
		errs     []error
		pingErr  error
		wantPing int
		wantDown bool
	}{
		{"a connection failure, the database down", []error{refused}, errors.New("refused"), 1, true},
		{"a connection failure, the database up (one broken connection)", []error{refused}, nil, 1, false},
		{"two time-outs in a row", []error{timeout, timeout}, errors.New("refused"), 0, false},
		{"three failures in a row, the database down", []error{timeout, throttled, timeout}, errors.New("timeout"), 1, true},
		{"three failures in a row, the database up", []error{timeout, timeout, timeout}, nil, 1, false},
		{"a success breaks the streak", []error{timeout, timeout, nil, timeout, timeout}, errors.New("refused"), 0, false},
		{"invalid messages say nothing about the database", []error{invalid, invalid, invalid, invalid}, errors.New("refused"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newConsumerMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			var pings atomic.Int32
			ping := func(context.Context) error { pings.Add(1); return tt.pingErr }
			o := newOutage(ping, m, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends the prober
			var last error
			for _, err := range tt.errs {
				last = o.observe(ctx, err)
			}
			down, _ := o.state()
			if down != tt.wantDown || int(pings.Load()) < tt.wantPing || (tt.wantPing == 0 && pings.Load() != 0) {
				t.Fatalf("down %v after %d pings, want %v after %d", down, pings.Load(), tt.wantDown, tt.wantPing)
			}
			if got, _ := decide(last, 1, 5); (got == pause) != tt.wantDown {
				t.Fatalf("decide(%v) = %v", last, got)
			}
		})
	}
}
