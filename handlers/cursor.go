package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Cursors are opaque to clients: base64url (no padding) of a versioned
// binary record. A reading-list cursor holds the keyset position of the
// page's last item, the order it was made for and a digest of the query it
// belongs to (type and filters), so a cursor pasted onto another query or
// another order is refused with a 400 instead of silently paging something
// else. The digest is not a secret MAC: a cursor carries no authority (any
// position it could name, the same key can ask for with from/to), so a
// forged one can only page from where it says; what matters is that no
// string, made up or tampered, reaches the database unchecked or causes a
// 500.
const (
	cursorReadings byte = 'r' // version 1 of the reading-list cursor
	cursorDevices  byte = 'd' // version 1 of the device-list cursor
	orderAsc       byte = 'a'
	orderDesc      byte = 'd'
	digestLen           = 8
	// readingCursorLen: version, order, time (µs), row id, query digest.
	readingCursorLen = 1 + 1 + 8 + 8 + digestLen
	maxCursorLen     = 128 // base64 characters; longer is made up
)

var cursorEncoding = base64.RawURLEncoding

// encodeListCursor is the next_cursor of a reading-list page; "" for none.
func encodeListCursor(next *storage.Position, t models.Type, q storage.ListQuery) string {
	if next == nil {
		return ""
	}
	b := make([]byte, 0, readingCursorLen)
	b = append(b, cursorReadings, orderOf(q.Asc))
	b = binary.BigEndian.AppendUint64(b, uint64(next.At.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, uint64(next.ID))
	d := queryDigest(t, q)
	b = append(b, d[:]...)
	return cursorEncoding.EncodeToString(b)
}

// decodeListCursor checks a reading-list cursor against the query it is
// used with; msg says what is wrong with it.
func decodeListCursor(s string, t models.Type, q storage.ListQuery) (*storage.Position, string) {
	const invalid = "is not a cursor this API issued; use next_cursor from the previous page as it is"
	if len(s) > maxCursorLen {
		return nil, invalid
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != readingCursorLen || b[0] != cursorReadings || (b[1] != orderAsc && b[1] != orderDesc) {
		return nil, invalid
	}
	if b[1] != orderOf(q.Asc) {
		made := "desc"
		if b[1] == orderAsc {
			made = "asc"
		}
		return nil, "was made for order=" + made + "; page with the order it was made for, or start again without a cursor"
	}
	d := queryDigest(t, q)
	if !bytes.Equal(b[18:], d[:]) {
		return nil, "belongs to another query (type or filters differ); keep the filters of the first page, or start again without a cursor"
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b[2:10]))).UTC()
	id := int64(binary.BigEndian.Uint64(b[10:18]))
	// Within what PostgreSQL and RFC 3339 can both hold: a forged position
	// must not turn into a database error.
	if id <= 0 || at.Year() < 1 || at.Year() > 9999 {
		return nil, invalid
	}
	return &storage.Position{At: at, ID: id}, ""
}

func orderOf(asc bool) byte {
	if asc {
		return orderAsc
	}
	return orderDesc
}

// queryDigest identifies a list query without its order, limit and
// position: what must stay the same from page to page.
func queryDigest(t models.Type, q storage.ListQuery) [digestLen]byte {
	h := sha256.New()
	for _, part := range []string{string(t), q.DeviceID, timeKey(q.From), timeKey(q.To), q.FaceID, q.RecognitionStatus} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var d [digestLen]byte
	copy(d[:], h.Sum(nil))
	return d
}

func timeKey(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// encodeDeviceCursor is the next_cursor of a device-list page; "" for none.
func encodeDeviceCursor(after string) string {
	if after == "" {
		return ""
	}
	return cursorEncoding.EncodeToString(append([]byte{cursorDevices}, after...))
}

// decodeDeviceCursor returns the device id a device-list page starts after.
func decodeDeviceCursor(s string) (string, string) {
	const invalid = "is not a cursor this API issued; use next_cursor from the previous page as it is"
	if len(s) > maxCursorLen {
		return "", invalid
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != cursorDevices {
		return "", invalid
	}
	after := string(b[1:])
	// Only a device id in its stored form can have been issued.
	if id, msg := models.NormalizeDeviceID(after); msg != "" || id != after {
		return "", invalid
	}
	return after, ""
}
