package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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
// migratedStore is a Store on a fresh migrated database, closed with b.
func migratedStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	st, err := Open(ctx, testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	if err := Migrate(ctx, st.Pool()); err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkDeviceSummaryCost(b *testing.B) {
	const n = 500
	for _, typ := range []models.Type{models.TypeGPS, models.TypeGyroscope} {
		for _, devices := range []int{1, 50, 500} {
			b.Run(fmt.Sprintf("%s/devices=%d", typ, devices), func(b *testing.B) {
				ctx := context.Background()
				st := migratedStore(b)
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

// BenchmarkGPSBatchVsCopy sets the worker's batch statement against the
// ceiling the bench command compares the worker with: a raw CopyFrom of
// the same GPS rows and their audit rows in one transaction (no
// exactly-once check, no returned rows, no device summary). Each
// iteration writes one 500-reading batch of each kind, in rotating order,
// into the same growing tables; it reports each per row and the
// statement's speed as a fraction of COPY's (of-copy: 0.70 is 70% of
// COPY's rate), with and without the device summary. This is the
// PostgreSQL side of the worker's drain ratio: the worker can approach it
// only by keeping PostgreSQL busy while it decodes and acknowledges
// (worker/batch.go's two writers).
func BenchmarkGPSBatchVsCopy(b *testing.B) {
	const n = 500
	for _, devices := range []int{1, 500} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			ctx := context.Background()
			st := migratedStore(b)
			plain := withoutSummary(b, insertGPSSQL)
			statement := func(sql string) func() error {
				return func() error {
					_, err := insertBatch(ctx, st, "bench", scanGPS, sql, costBatch(models.TypeGPS, n, devices)...)
					return err
				}
			}
			variants := []func() error{statement(insertGPSSQL), statement(plain), func() error {
				return copyBatch(ctx, st, costBatch(models.TypeGPS, n, devices))
			}}
			spent := make([]time.Duration, len(variants))
			i := 0
			for b.Loop() {
				for k := range variants {
					v := (k + i) % len(variants)
					start := time.Now()
					if err := variants[v](); err != nil {
						b.Fatal(err)
					}
					spent[v] += time.Since(start)
				}
				i++
			}
			rows := float64(b.N * n)
			b.ReportMetric(float64(spent[0].Nanoseconds())/rows, "statement-ns/row")
			b.ReportMetric(float64(spent[1].Nanoseconds())/rows, "no-summary-ns/row")
			b.ReportMetric(float64(spent[2].Nanoseconds())/rows, "copy-ns/row")
			b.ReportMetric(float64(spent[2])/float64(spent[0]), "of-copy")
			b.ReportMetric(float64(spent[2])/float64(spent[1]), "no-summary-of-copy")
		})
	}
}

// copyBatch writes the GPS rows of a costBatch and their audit rows with
// two COPYs in one transaction, as the bench command's baseline does.
func copyBatch(ctx context.Context, st *Store, args []any) error {
	ids, actors, devs := args[0].([]messageID), args[1].([]string), args[2].([]string)
	lats, lons := args[3].([]float64), args[4].([]float64)
	recorded, received := args[5].([]time.Time), args[6].([]time.Time)
	return pgx.BeginFunc(ctx, st.pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"gps"},
			[]string{"message_id", "device_id", "latitude", "longitude", "recorded_at", "received_at"},
			pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) {
				return []any{ids[i], devs[i], lats[i], lons[i], recorded[i], received[i]}, nil
			})); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_log"},
			[]string{"actor", "action", "resource", "resource_id", "message_id", "details"},
			pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) {
				return []any{actors[i], ActionGPSStored, "gps", strconv.Itoa(i), ids[i],
					`{"device_id": "` + devs[i] + `"}`}, nil
			}))
		return err
	})
}

var costT0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// costBatch is the arguments of a batch statement of type t: n new readings
// over devices devices.
func costBatch(t models.Type, n, devices int) []any {
	ids, actors, devs := make([]messageID, n), make([]string, n), make([]string, n)
	a, bb, c := make([]float64, n), make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i := range n {
		ids[i], actors[i], devs[i] = messageID(uuid.Must(uuid.NewV7())), "fleet-app", fmt.Sprintf("dev-%04d", i%devices)
		a[i], bb[i], c[i] = float64(i%90), float64(i%180), 1
		recorded[i] = costT0.Add(time.Duration(i) * time.Second)
		received[i] = recorded[i].Add(time.Second)
	}
	if t == models.TypeGPS {
		return []any{ids, actors, devs, a, bb, recorded, received, ActionGPSStored}
	}
	return []any{ids, actors, devs, a, bb, c, recorded, received, ActionGyroscopeStored}
}
