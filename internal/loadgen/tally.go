package loadgen

import "time"

// tally is what one worker recorded, over all its requests or those of one
// label; a worker owns its tallies (no locks on the hot path), and they are
// added into the Result once the run is over.
type tally struct {
	lat                           *Histogram
	status                        map[int]int64
	errors                        map[string]int64
	samples                       map[string]string
	sent, ok, readings, cancelled int64
}

func newTally() *tally {
	return &tally{lat: NewHistogram(), status: map[int]int64{}, errors: map[string]int64{}, samples: map[string]string{}}
}

// answer records an HTTP answer; only a 2xx adds readings and a latency.
func (t *tally) answer(status, readings int, latency time.Duration) {
	t.sent++
	t.status[status]++
	if status/100 == 2 {
		t.ok++
		t.readings += int64(max(readings, 1))
		t.lat.Record(latency)
	}
}

// fail records a request that got no answer, by class, keeping the first
// message of each class.
func (t *tally) fail(class string, err error) {
	t.sent++
	t.errors[class]++
	if _, ok := t.samples[class]; !ok {
		t.samples[class] = err.Error()
	}
}

func newResult() Result {
	return Result{Status: map[int]int64{}, Errors: map[string]int64{}, ErrorSamples: map[string]string{}, Latency: NewHistogram()}
}

// addTo adds t into res.
func (t *tally) addTo(res *Result) {
	res.Sent += t.sent
	res.OK += t.ok
	res.Readings += t.readings
	res.Cancelled += t.cancelled
	res.Latency.Merge(t.lat)
	for s, n := range t.status {
		res.Status[s] += n
	}
	for c, n := range t.errors {
		res.Errors[c] += n
	}
	for c, m := range t.samples {
		res.ErrorSamples[c] = m
	}
}
