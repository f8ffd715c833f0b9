package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// ActionPhotoViewed is the audit action of a photo image served by the read
// API; unlike the *.stored actions it may repeat for a message (0002's
// partial unique index).
const ActionPhotoViewed = "photo.viewed"

// readingTable is what the read queries need to know of a data table: its
// name, the columns of its item (row id, message id, device id, recorded_at,
// received_at, created_at, then the reading's own) and whether the photo
// filters apply.
type readingTable struct {
	name    string
	columns string
	photo   bool
}

var readingTables = map[models.Type]readingTable{
	models.TypeGyroscope: {"gyroscope", "id, message_id, device_id, recorded_at, received_at, created_at, x, y, z", false},
	models.TypeGPS:       {"gps", "id, message_id, device_id, recorded_at, received_at, created_at, latitude, longitude", false},
	models.TypePhoto: {"photo", "id, message_id, device_id, recorded_at, received_at, created_at, " +
		"content_type, size_bytes, recognition_status, recognized, face_id, similarity", true},
}

// itemScanner scans one row of readingTable.columns into an item and its
// keyset position. The message id is scanned as a messageID ([16]byte,
// PostgreSQL's binary uuid as is): into a uuid.UUID, an sql.Scanner, pgx
// would format it as text and parse it back, per row.
type itemScanner[T any] func(row pgx.Row) (T, Position, error)

func scanGyroscope(row pgx.Row) (models.GyroscopeItem, Position, error) {
	var it models.GyroscopeItem
	var id int64
	err := row.Scan(&id, (*messageID)(&it.ID), &it.DeviceID, &it.Timestamp, &it.ReceivedAt, &it.StoredAt, &it.X, &it.Y, &it.Z)
	inUTC(&it.ItemMeta)
	return it, Position{At: it.Timestamp, ID: id}, err
}

func scanGPS(row pgx.Row) (models.GPSItem, Position, error) {
	var it models.GPSItem
	var id int64
	err := row.Scan(&id, (*messageID)(&it.ID), &it.DeviceID, &it.Timestamp, &it.ReceivedAt, &it.StoredAt, &it.Latitude, &it.Longitude)
	inUTC(&it.ItemMeta)
	return it, Position{At: it.Timestamp, ID: id}, err
}

func scanPhoto(row pgx.Row) (models.PhotoItem, Position, error) {
	var it models.PhotoItem
	var id int64
	rec := &it.Recognition
	err := row.Scan(&id, (*messageID)(&it.ID), &it.DeviceID, &it.Timestamp, &it.ReceivedAt, &it.StoredAt,
		&it.ContentType, &it.SizeBytes, &rec.Status, &rec.Recognized, &rec.FaceID, &rec.Similarity)
	inUTC(&it.ItemMeta)
	it.ImageURL = models.PhotoImageURL(it.ID)
	return it, Position{At: it.Timestamp, ID: id}, err
}

// inUTC puts an item's times in UTC (pgx returns them in time.Local).
func inUTC(m *models.ItemMeta) {
	m.Timestamp, m.ReceivedAt, m.StoredAt = m.Timestamp.UTC(), m.ReceivedAt.UTC(), m.StoredAt.UTC()
}

// ListGyroscope returns a page of gyroscope readings.
func (r *Reader) ListGyroscope(ctx context.Context, q ListQuery) (Page[models.GyroscopeItem], error) {
	return list(ctx, r, "storage.Reader.ListGyroscope", models.TypeGyroscope, scanGyroscope, q)
}

// ListGPS returns a page of GPS fixes.
func (r *Reader) ListGPS(ctx context.Context, q ListQuery) (Page[models.GPSItem], error) {
	return list(ctx, r, "storage.Reader.ListGPS", models.TypeGPS, scanGPS, q)
}

// ListPhotos returns a page of photos' metadata.
func (r *Reader) ListPhotos(ctx context.Context, q ListQuery) (Page[models.PhotoItem], error) {
	return list(ctx, r, "storage.Reader.ListPhotos", models.TypePhoto, scanPhoto, q)
}

// list runs listSQL and reads one row more than the page holds: its
// presence is what says a next page exists, without a count.
func list[T any](ctx context.Context, r *Reader, op string, t models.Type, scan itemScanner[T], q ListQuery) (Page[T], error) {
	sql, args, err := listSQL(t, q)
	if err != nil {
		return Page[T]{}, ierr.E(ierr.Invalid, op, err)
	}
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return Page[T]{}, translate(op, err)
	}
	defer rows.Close()
	page := Page[T]{Items: make([]T, 0, q.Limit)}
	var last Position
	for rows.Next() {
		if len(page.Items) == q.Limit {
			page.Next = &last
			break
		}
		item, pos, err := scan(rows)
		if err != nil {
			return Page[T]{}, translate(op, err)
		}
		page.Items = append(page.Items, item)
		last = pos
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Page[T]{}, translate(op, err)
	}
	return page, nil
}

// listSQL builds the page query of q on table t. Only the conditions q sets
// appear (a catch-all "($1 IS NULL OR device_id = $1)" would defeat the
// index choice, above all in a generic plan), so each filter combination is
// its own statement and pgx caches one prepared statement per combination.
//
// The ORDER BY is (recorded_at, id) in the chosen direction and the cursor
// is a row comparison on the same columns, so the page is a range scan of
// the (device_id | face_id | recognition_status | nothing, recorded_at, id)
// index that the equality filters select, forwards or backwards, stopping
// after Limit+1 rows: its cost does not depend on the table's size or on
// how deep the client has paged.
func listSQL(t models.Type, q ListQuery) (string, []any, error) {
	tbl, ok := readingTables[t]
	switch {
	case !ok:
		return "", nil, fmt.Errorf("unknown telemetry type %q", t)
	case q.Limit < 1:
		return "", nil, fmt.Errorf("limit %d: must be at least 1", q.Limit)
	case !tbl.photo && (q.FaceID != "" || q.RecognitionStatus != ""):
		return "", nil, fmt.Errorf("face_id and recognition_status filter photos only")
	case !q.From.IsZero() && !q.To.IsZero() && q.From.After(q.To):
		return "", nil, fmt.Errorf("from is after to")
	}
	var w whereBuilder
	if q.DeviceID != "" {
		w.add("device_id = $?", q.DeviceID)
	}
	if q.FaceID != "" {
		w.add("face_id = $?", q.FaceID)
	}
	if q.RecognitionStatus != "" {
		w.add("recognition_status = $?", q.RecognitionStatus)
	}
	w.timeRange(q.From, q.To)
	dir, cmp := " DESC", "<"
	if q.Asc {
		dir, cmp = "", ">"
	}
	if q.After != nil {
		w.add("(recorded_at, id) "+cmp+" ($?, $?)", q.After.At, q.After.ID)
	}
	sql := "SELECT " + tbl.columns + " FROM " + tbl.name + w.String() +
		" ORDER BY recorded_at" + dir + ", id" + dir + " LIMIT " + w.arg(q.Limit+1)
	return sql, w.args, nil
}

// whereBuilder collects the conditions and arguments of a WHERE clause; "$?"
// in a condition is replaced by the next argument's number.
type whereBuilder struct {
	conds []string
	args  []any
}

func (w *whereBuilder) add(cond string, args ...any) {
	for _, a := range args {
		cond = strings.Replace(cond, "$?", w.arg(a), 1)
	}
	w.conds = append(w.conds, cond)
}

// arg appends an argument and returns its placeholder.
func (w *whereBuilder) arg(a any) string {
	w.args = append(w.args, a)
	return "$" + strconv.Itoa(len(w.args))
}

// timeRange adds the inclusive [from, to] bounds on recorded_at; a zero
// time is no bound.
func (w *whereBuilder) timeRange(from, to time.Time) {
	if !from.IsZero() {
		w.add("recorded_at >= $?", from)
	}
	if !to.IsZero() {
		w.add("recorded_at <= $?", to)
	}
}

func (w *whereBuilder) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// Gyroscope returns one gyroscope reading by message id; NotFound while it
// is not stored (still queued, or never sent).
func (r *Reader) Gyroscope(ctx context.Context, id uuid.UUID) (models.GyroscopeItem, error) {
	return one(ctx, r, "storage.Reader.Gyroscope", models.TypeGyroscope, scanGyroscope, id)
}

// GPS returns one GPS fix by message id; NotFound while it is not stored.
func (r *Reader) GPS(ctx context.Context, id uuid.UUID) (models.GPSItem, error) {
	return one(ctx, r, "storage.Reader.GPS", models.TypeGPS, scanGPS, id)
}

// Photo returns one photo's metadata by message id; NotFound while it is
// not stored.
func (r *Reader) Photo(ctx context.Context, id uuid.UUID) (models.PhotoItem, error) {
	return one(ctx, r, "storage.Reader.Photo", models.TypePhoto, scanPhoto, id)
}

// one reads a reading by message id through the table's unique index.
func one[T any](ctx context.Context, r *Reader, op string, t models.Type, scan itemScanner[T], id uuid.UUID) (T, error) {
	tbl := readingTables[t]
	item, _, err := scan(r.pool.QueryRow(ctx, "SELECT "+tbl.columns+" FROM "+tbl.name+" WHERE message_id = $1", id))
	if err != nil {
		var zero T
		return zero, translate(op, err) // pgx.ErrNoRows → NotFound
	}
	return item, nil
}

// PhotoImage returns a photo's sealed image; NotFound while it is not
// stored.
func (r *Reader) PhotoImage(ctx context.Context, id uuid.UUID) (SealedImage, error) {
	var img SealedImage
	err := r.pool.QueryRow(ctx, `
		SELECT id, message_id, device_id, content_type, encryption_key_id, image_ciphertext
		FROM photo WHERE message_id = $1`, id).
		Scan(&img.RowID, &img.MessageID, &img.DeviceID, &img.ContentType, &img.KeyID, &img.Ciphertext)
	if err != nil {
		return SealedImage{}, translate("storage.Reader.PhotoImage", err)
	}
	return img, nil
}

// AuditPhotoViewed writes one audit_log row for an image served: actor is
// the API key's name, details what the request adds (request id, client
// address). Every view is a row of its own. The statement has no RETURNING
// and no ON CONFLICT: challenge_reader may insert into audit_log, never
// read it.
func (r *Reader) AuditPhotoViewed(ctx context.Context, actor string, img SealedImage, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	_, err := r.pool.Exec(ctx, `
		INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
		VALUES ($1, $2, 'photo', $3, $4, $5::jsonb)`,
		actor, ActionPhotoViewed, strconv.FormatInt(img.RowID, 10), img.MessageID, details)
	return translate("storage.Reader.AuditPhotoViewed", err)
}
