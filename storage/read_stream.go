package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// ReplayGrace is how far before the last seen reading's created_at the
// live-stream replay starts. created_at is now() of the inserting
// transaction, taken when it starts, and transactions commit out of that
// order: a reading stamped a moment before the last one a client saw may
// have committed (and been announced) after it. Replaying from that moment
// minus ReplayGrace means such a late reading is not missed, at the price
// of repeating the readings of the last ReplayGrace, which the client has
// probably seen already (SSE clients de-duplicate by id). The worker's
// insert statements take milliseconds; 2 s covers a slow commit.
const ReplayGrace = 2 * time.Second

// Event is one reading replayed for the live stream. Data is the JSON of
// the item, byte for byte what the list routes encode for it.
type Event struct {
	Type models.Type
	ID   uuid.UUID // the message id
	Data []byte
}

// anchorSQL finds a message's created_at, whatever its table, through the
// unique message_id indexes.
const anchorSQL = `
SELECT created_at FROM gyroscope WHERE message_id = $1
UNION ALL SELECT created_at FROM gps WHERE message_id = $1
UNION ALL SELECT created_at FROM photo WHERE message_id = $1
LIMIT 1`

// storedAfterSQL is the replay query on one table: the rows stored since a
// moment (a range of the created_at BRIN index: the recent blocks of an
// append-mostly table), but lastID, in stored order.
func storedAfterSQL(t models.Type, since time.Time, lastID uuid.UUID, deviceID string, limit int) (string, []any) {
	tbl := readingTables[t]
	var w whereBuilder
	w.add("created_at >= $?", since)
	w.add("message_id <> $?", lastID)
	if deviceID != "" {
		w.add("device_id = $?", deviceID)
	}
	return "SELECT " + tbl.columns + " FROM " + tbl.name + w.String() +
		" ORDER BY created_at, id LIMIT " + w.arg(limit), w.args
}

// replayed is a row of the replay before it is encoded, with its sort key.
type replayed struct {
	storedAt time.Time
	table    int // index in models.Types: the order of readings stored at the same moment
	rowID    int64
	typ      models.Type
	id       uuid.UUID
	item     any
}

// StoredAfter returns what was stored after the reading with message id
// lastID (found in any of the three tables): the readings of the given
// types (all when empty) and device ("" = all), in stored order (created_at,
// then table, then row id), at most limit. The window starts ReplayGrace
// before lastID's created_at, so readings stored just before lastID may
// repeat; lastID itself never does. found is false when lastID is in no
// table (too old and deleted, made up, or still queued).
func (r *Reader) StoredAfter(ctx context.Context, lastID uuid.UUID, types []models.Type, deviceID string, limit int) (events []Event, found bool, err error) {
	const op = "storage.Reader.StoredAfter"
	if limit < 1 {
		return nil, false, ierr.Errorf(ierr.Invalid, op, "limit %d: must be at least 1", limit)
	}
	for _, t := range types {
		if _, ok := readingTables[t]; !ok {
			return nil, false, ierr.Errorf(ierr.Invalid, op, "unknown telemetry type %q", t)
		}
	}
	var anchor time.Time
	if err := r.pool.QueryRow(ctx, anchorSQL, lastID).Scan(&anchor); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, nil
		}
		return nil, false, translate(op, err)
	}
	since := anchor.Add(-ReplayGrace)

	// One statement per table, sent together (one round trip), each
	// already ordered and limited; merged below.
	var batch pgx.Batch
	var sent []int
	for i, t := range models.Types {
		if len(types) > 0 && !slices.Contains(types, t) {
			continue
		}
		sql, args := storedAfterSQL(t, since, lastID, deviceID, limit)
		batch.Queue(sql, args...)
		sent = append(sent, i)
	}
	br := r.pool.SendBatch(ctx, &batch)
	defer br.Close()
	var rows []replayed
	for _, i := range sent {
		var err error
		switch models.Types[i] {
		case models.TypeGyroscope:
			rows, err = collectReplay(br, rows, i, scanGyroscope, func(it models.GyroscopeItem) models.ItemMeta { return it.ItemMeta })
		case models.TypeGPS:
			rows, err = collectReplay(br, rows, i, scanGPS, func(it models.GPSItem) models.ItemMeta { return it.ItemMeta })
		case models.TypePhoto:
			rows, err = collectReplay(br, rows, i, scanPhoto, func(it models.PhotoItem) models.ItemMeta { return it.ItemMeta })
		}
		if err != nil {
			return nil, true, translate(op, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, true, translate(op, err)
	}

	slices.SortFunc(rows, func(a, b replayed) int {
		return cmp.Or(a.storedAt.Compare(b.storedAt), cmp.Compare(a.table, b.table), cmp.Compare(a.rowID, b.rowID))
	})
	rows = rows[:min(len(rows), limit)]
	events = make([]Event, len(rows))
	for i, row := range rows {
		data, err := json.Marshal(row.item)
		if err != nil {
			return nil, true, ierr.E(ierr.Internal, op, err)
		}
		events[i] = Event{Type: row.typ, ID: row.id, Data: data}
	}
	return events, true, nil
}

// collectReplay appends the rows of the batch's next result, of table
// models.Types[table], to rows.
func collectReplay[T any](br pgx.BatchResults, rows []replayed, table int, scan itemScanner[T], meta func(T) models.ItemMeta) ([]replayed, error) {
	res, err := br.Query()
	if err != nil {
		return rows, err
	}
	defer res.Close()
	for res.Next() {
		item, pos, err := scan(res)
		if err != nil {
			return rows, err
		}
		m := meta(item)
		rows = append(rows, replayed{storedAt: m.StoredAt, table: table, rowID: pos.ID, typ: models.Types[table], id: m.ID, item: item})
	}
	return rows, res.Err()
}
