package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/services"
	"github.com/challenge-v3/challenge-v3/worker"
)

// heldAnalyzer answers Misconfigured (the worker holds the photo, alive and
// unacknowledged) until released.
type heldAnalyzer struct{ released atomic.Bool }

func (a *heldAnalyzer) AnalyzeMessage(context.Context, string, string, []byte) (services.Analysis, error) {
	if !a.released.Load() {
		return services.Analysis{}, ierr.Errorf(ierr.Misconfigured, "test.Analyze", "access denied")
	}
	return services.Analysis{Status: services.StatusNoFace}, nil
}

// worker_consumer_oldest_pending_age_seconds is the age of the oldest
// unacknowledged message of each type: a photo the worker holds ages (never
// beyond the time since it was published), a type with nothing waiting
// reads 0, and the photo's age falls back to 0 once it is stored.
func TestOldestPendingAgeGauge(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	a := &heldAnalyzer{}
	e.start(worker.Options{Analyzer: a})
	published := time.Now()
	e.publish(models.TypePhoto, photoReading(readFixture(t, "grace_hopper.jpg")))
	const photo = `worker_consumer_oldest_pending_age_seconds{type="photo"}`
	e.waitFor(20*time.Second, "the held photo's age", func() bool { return e.metric(photo) > 0 })
	if age, since := e.metric(photo), time.Since(published).Seconds(); age > since {
		t.Errorf("photo age %.3f s, but it was published %.3f s ago", age, since)
	}
	for _, typ := range []models.Type{models.TypeGPS, models.TypeGyroscope} {
		if g := e.metric(`worker_consumer_oldest_pending_age_seconds{type="` + string(typ) + `"}`); g != 0 {
			t.Errorf("%s: age %v with nothing waiting", typ, g)
		}
	}
	a.released.Store(true)
	e.waitFor(30*time.Second, "the photo stored", func() bool { return e.drained(models.TypePhoto) })
	e.waitFor(20*time.Second, "the photo's age back to 0", func() bool { return e.metric(photo) == 0 })
}
