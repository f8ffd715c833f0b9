package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/worker"
)

// syncBuffer is a bytes.Buffer a test may read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRekeyReSealsEveryPhotoAndResumes(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	if err := worker.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	k1, _ := crypto.GenerateKey("k1")
	k2, _ := crypto.GenerateKey("k2")
	old, err := crypto.NewSealer([]crypto.Key{k1})
	if err != nil {
		t.Fatal(err)
	}

	// Seven photos sealed under k1, as the worker stores them.
	originals := map[uuid.UUID][]byte{}
	for i := range 7 {
		img := make([]byte, 100+i)
		rand.Read(img)
		id := uuid.New()
		keyID, sealed, err := old.Seal(img, id[:])
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		_, inserted, err := store.InsertPhoto(ctx, storage.Photo{
			Meta:        models.Meta{MessageID: id, Actor: "dev", ReceivedAt: now, DeviceID: "d1", RecordedAt: now},
			ContentType: "image/png", SizeBytes: len(img), Ciphertext: sealed, KeyID: keyID, RecognitionStatus: "disabled",
		})
		if err != nil || !inserted {
			t.Fatalf("insert: %v %v", inserted, err)
		}
		originals[id] = img
	}

	env := map[string]string{"DATABASE_URL": dsn, "ENCRYPTION_KEYS": k2.Encode() + "," + k1.Encode()}
	rekeyCmd := func(ctx context.Context, args ...string) (int, string, string) {
		var out, errOut syncBuffer
		code := runRekey(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// Interrupted after its first batch of 2 (the rate holds it 1 s there).
	ictx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(400 * time.Millisecond); cancel() }()
	code, out, errOut := rekeyCmd(ictx, "-batch", "2", "-rate", "2", "-actor", "ops-anna")
	if code != 1 || !strings.Contains(out, "re-sealed 2 of 7 photos (28%)\n") ||
		!strings.Contains(errOut, "worker rekey: interrupted after 2 of 7 photos; every finished batch is committed, run worker rekey again to continue") {
		t.Fatalf("interrupted rekey: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The next run continues with the five left.
	code, out, errOut = rekeyCmd(ctx, "-batch", "2", "-rate", "0", "-actor", "ops-anna")
	if code != 0 || !strings.HasPrefix(out, "re-sealing 5 photos under \"k2\", 2 per batch\n") ||
		!strings.Contains(out, "re-sealed 5 of 5 photos (100%)\n") || !strings.Contains(out, `done: 5 photos re-sealed under "k2"`) ||
		strings.Count(errOut, `msg="photos re-sealed"`) != 3 {
		t.Fatalf("resumed rekey: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := rekeyCmd(ctx, "-actor", "ops-anna"); code != 0 || out != "every photo is sealed under the active key \"k2\"; nothing to do\n" {
		t.Errorf("third run: exit %d, stdout %q", code, out)
	}

	// k1 removed: every photo opens with k2 alone, to its exact bytes.
	onlyK2, err := crypto.NewSealer([]crypto.Key{k2})
	if err != nil {
		t.Fatal(err)
	}
	for id, img := range originals {
		p, err := store.GetPhoto(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := onlyK2.Open(p.KeyID, p.Ciphertext, id[:])
		if p.KeyID != "k2" || err != nil || !bytes.Equal(got, img) {
			t.Errorf("photo %s: key %q, open: %v, same bytes: %v", id, p.KeyID, err, bytes.Equal(got, img))
		}
	}
	var batches, rows int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*), coalesce(sum((details->>'rows')::int), 0) FROM audit_log
		WHERE action = 'photo.rekeyed' AND actor = 'ops-anna' AND details->>'to_key' = 'k2'`).Scan(&batches, &rows); err != nil {
		t.Fatal(err)
	}
	if batches != 4 || rows != 7 {
		t.Errorf("audit_log: %d photo.rekeyed rows for %d photos, want 4 for 7", batches, rows)
	}
}

func TestRekeyUsage(t *testing.T) {
	for _, args := range [][]string{{"now"}, {"-batch", "0"}, {"-rate", "-1"}, {"-x"}} {
		code, out, errOut := runWorkerCmd(t, nil, append([]string{"rekey"}, args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "worker rekey: ") || !strings.Contains(errOut, "usage:") {
			t.Errorf("rekey %q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	code, _, errOut := runWorkerCmd(t, nil, "rekey", "-actor", "x")
	if code != 2 || !strings.Contains(errOut, "DATABASE_URL: is required") || !strings.Contains(errOut, "ENCRYPTION_KEYS") {
		t.Errorf("rekey without configuration: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{"rekey", "-h"}, {"rekey", "--help"}, {"rekey", "help"}, {"help", "rekey"}} {
		code, out, errOut := runWorkerCmd(t, nil, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "worker rekey: re-seal") || !hasRow(out, "DATABASE_URL", "required") {
			t.Errorf("worker %q: exit %d, stderr %q, stdout:\n%s", args, code, errOut, out)
		}
	}
}
