package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
)

// withoutSummary is a batch statement minus its device upsert: the
// statement as it was before the device table.
func withoutSummary(tb testing.TB, sql string) string {
	tb.Helper()
	start := strings.Index(sql, "), summarized AS (")
	end := strings.LastIndex(sql, ")\nSELECT ")
	if start < 0 || end < start {
		tb.Fatal("no summarized CTE in the statement")
	}
	return sql[:start] + sql[end:]
}

// BenchmarkDeviceSummaryCost measures what keeping the device summary
// costs the worker's batch inserts. Each iteration writes one 500-reading
// batch with the real statement and one with the same statement minus its
// device upsert, in alternating order, into the same growing tables, so
// both see the same table sizes and the same load on a shared machine; it
// reports both per row and their ratio (cost-x: 1.10 is 10% slower). The
// readings are spread over 1, 50 or 500 devices: the upsert writes one
// device row per device in the batch.
func BenchmarkDeviceSummaryCost(b *testing.B) {
	const n = 500
	for _, typ := range []models.Type{models.TypeGPS, models.TypeGyroscope} {
		for _, devices := range []int{1, 50, 500} {
			b.Run(fmt.Sprintf("%s/devices=%d", typ, devices), func(b *testing.B) {
				ctx := context.Background()
				st, err := Open(ctx, testenv.Postgres(b))
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				if err := Migrate(ctx, st.Pool()); err != nil {
					b.Fatal(err)
				}
				sql := map[models.Type]string{models.TypeGPS: insertGPSSQL, models.TypeGyroscope: insertGyroscopeSQL}[typ]
				plain := withoutSummary(b, sql)
				insert := func(sql string) time.Duration {
					args := costBatch(typ, n, devices)
					start := time.Now()
					var err error
					if typ == models.TypeGPS {
						_, err = insertBatch(ctx, st, "bench", scanGPS, sql, args...)
					} else {
						_, err = insertBatch(ctx, st, "bench", scanGyroscope, sql, args...)
					}
					if err != nil {
						b.Fatal(err)
					}
					return time.Since(start)
				}
				var with, without time.Duration
				i := 0
				for b.Loop() {
					if i%2 == 0 {
						with += insert(sql)
						without += insert(plain)
					} else {
						without += insert(plain)
						with += insert(sql)
					}
					i++
				}
				rows := float64(b.N * n)
				b.ReportMetric(float64(with.Nanoseconds())/rows, "with-ns/row")
				b.ReportMetric(float64(without.Nanoseconds())/rows, "without-ns/row")
				b.ReportMetric(float64(with)/float64(without), "cost-x")
			})
		}
	}
}

var costT0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// costBatch is the arguments of a batch statement of type t: n new readings
// over devices devices.
func costBatch(t models.Type, n, devices int) []any {
	ids, actors, devs := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	a, bb, c := make([]float64, n), make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i := range n {
		ids[i], actors[i], devs[i] = uuid.Must(uuid.NewV7()), "fleet-app", fmt.Sprintf("dev-%04d", i%devices)
		a[i], bb[i], c[i] = float64(i%90), float64(i%180), 1
		recorded[i] = costT0.Add(time.Duration(i) * time.Second)
		received[i] = recorded[i].Add(time.Second)
	}
	if t == models.TypeGPS {
		return []any{ids, actors, devs, a, bb, recorded, received, ActionGPSStored}
	}
	return []any{ids, actors, devs, a, bb, c, recorded, received, ActionGyroscopeStored}
}
