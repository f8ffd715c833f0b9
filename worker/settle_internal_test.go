package worker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

func TestDecide(t *testing.T) {
	const maxDeliver = 5
	tests := []struct {
		name      string
		err       error
		delivered uint64
		want      action
		reason    string
	}{
		{"invalid message", ierr.Errorf(ierr.Invalid, "models.Unmarshal", "bad json"), 1, deadLetter, "bad json"},
		{"too large", ierr.E(ierr.TooLarge, "x", nil), 1, deadLetter, "too_large"},
		{"unsupported image", ierr.E(ierr.Unsupported, "x", nil), 1, deadLetter, "unsupported"},
		{"transient", ierr.Errorf(ierr.Unavailable, "storage", "lock timeout"), 1, retry, ""},
		{"transient, last delivery", ierr.Errorf(ierr.Unavailable, "storage", "lock timeout"), 5, deadLetter, "exhausted 5 deliveries: storage: unavailable: lock timeout"},
		{"database down", fmt.Errorf("%w: %w", errOutage, ierr.Errorf(ierr.Unavailable, "storage", "conn refused")), 1, pause, ""},
		{"database down, past the last delivery", fmt.Errorf("%w: %w", errOutage, ierr.Errorf(ierr.Unavailable, "storage", "conn refused")), 9, pause, ""},
		{"stopping during an outage", errOutage, 5, pause, ""},
		{"unexpected error", errors.New("boom"), 4, retry, ""},
		{"unexpected error, last delivery", errors.New("boom"), 5, deadLetter, "exhausted 5 deliveries: boom"},
		{"misconfigured", ierr.Errorf(ierr.Misconfigured, "services", "access denied"), 1, hold, ""},
		{"misconfigured, last delivery", ierr.Errorf(ierr.Misconfigured, "services", "access denied"), 9, hold, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := decide(tt.err, tt.delivered, maxDeliver)
			if got != tt.want || !strings.Contains(reason, tt.reason) || (tt.reason == "") != (reason == "") {
				t.Fatalf("decide = %v %q, want %v %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	schedule := []time.Duration{time.Second, 5 * time.Second, 15 * time.Second}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 5 * time.Second, 3: 15 * time.Second, 4: 15 * time.Second, 100: 15 * time.Second} {
		if got := backoff(schedule, n); got != want {
			t.Errorf("backoff after delivery %d = %s, want %s", n, got, want)
		}
	}
}
