package rekognitionfake_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func createCollection(t *testing.T, client *rekognition.Client, id string) {
	t.Helper()
	if _, err := client.CreateCollection(context.Background(), &rekognition.CreateCollectionInput{CollectionId: aws.String(id)}); err != nil {
		t.Fatalf("CreateCollection: %v", err)
	}
}

func indexFace(t *testing.T, client *rekognition.Client, coll string, img []byte) string {
	t.Helper()
	out, err := client.IndexFaces(context.Background(), &rekognition.IndexFacesInput{
		CollectionId: aws.String(coll), Image: &types.Image{Bytes: img}, ExternalImageId: aws.String("dev-1"), MaxFaces: aws.Int32(1),
	})
	if err != nil || len(out.FaceRecords) != 1 {
		t.Fatalf("IndexFaces: %+v, %v", out, err)
	}
	return aws.ToString(out.FaceRecords[0].Face.FaceId)
}

func searchFace(t *testing.T, client *rekognition.Client, coll string, img []byte) []types.FaceMatch {
	t.Helper()
	out, err := client.SearchFacesByImage(context.Background(), &rekognition.SearchFacesByImageInput{
		CollectionId: aws.String(coll), Image: &types.Image{Bytes: img}, FaceMatchThreshold: aws.Float32(90), MaxFaces: aws.Int32(1),
	})
	if err != nil {
		t.Fatalf("SearchFacesByImage: %v", err)
	}
	return out.FaceMatches
}

// Two emulators with the same history (the dev stack before and after a
// restart) never hand out the same face id: a stored face id names one face.
func TestFaceIDsAreUniqueAcrossInstances(t *testing.T) {
	t.Parallel()
	images := [][]byte{fixture(t, "astronaut.png"), fixture(t, "chelsea.png"), fixture(t, "grace_hopper.jpg")}
	seen := map[string]string{}
	for run := range 2 {
		srv, client := start(t)
		createCollection(t, client, "devstack-faces")
		for i, img := range images {
			id := indexFace(t, client, "devstack-faces", img)
			if !uuidV4.MatchString(id) {
				t.Fatalf("face id %q is not a random (version 4) UUID", id)
			}
			where := fmt.Sprintf("run %d image %d", run+1, i+1)
			if prev, dup := seen[id]; dup {
				t.Fatalf("face id %s given twice: %s and %s", id, prev, where)
			}
			seen[id] = where
		}
		for _, f := range srv.Faces("devstack-faces") {
			if !uuidV4.MatchString(f.ImageID) {
				t.Fatalf("image id %q is not a random UUID", f.ImageID)
			}
		}
	}
}

// A collection kept in a state file survives a restart: the face indexed
// before is found by a search after, and new faces get new ids.
func TestOpenPersistsCollectionsAcrossRestarts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "rekognition.json")
	grace, astronaut, cat := fixture(t, "grace_hopper.jpg"), fixture(t, "astronaut.png"), fixture(t, "chelsea.png")

	first, err := rekognitionfake.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	client := sdkClient(first.URL)
	createCollection(t, client, "devstack-faces")
	createCollection(t, client, "other")
	graceID := indexFace(t, client, "devstack-faces", grace)
	astronautID := indexFace(t, client, "devstack-faces", astronaut)
	before := first.Faces("devstack-faces")
	first.Close()

	second, err := rekognitionfake.Open(path)
	if err != nil {
		t.Fatalf("Open after restart: %v", err)
	}
	t.Cleanup(second.Close)
	client = sdkClient(second.URL)
	if got := second.Collections(); len(got) != 2 || got[0] != "devstack-faces" || got[1] != "other" {
		t.Fatalf("collections after restart = %v", got)
	}
	if after := second.Faces("devstack-faces"); len(after) != len(before) || after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("faces after restart = %+v, want %+v", after, before)
	}
	if m := searchFace(t, client, "devstack-faces", grace); len(m) != 1 || aws.ToString(m[0].Face.FaceId) != graceID ||
		aws.ToString(m[0].Face.ExternalImageId) != "dev-1" {
		t.Fatalf("search after restart = %+v, want the face %s indexed before", m, graceID)
	}
	if m := searchFace(t, client, "devstack-faces", cat); len(m) != 0 {
		t.Fatalf("a cat matched %+v", m)
	}
	if id := indexFace(t, client, "devstack-faces", cat); id == graceID || id == astronautID {
		t.Fatalf("the cat got the face id %s of a face indexed before the restart", id)
	}
	desc, err := client.DescribeCollection(context.Background(), &rekognition.DescribeCollectionInput{CollectionId: aws.String("devstack-faces")})
	if err != nil || aws.ToInt64(desc.FaceCount) != 3 {
		t.Fatalf("DescribeCollection: %+v, %v", desc, err)
	}
	if !second.DeleteCollection("other") {
		t.Fatal("DeleteCollection = false")
	}
	second.Close()

	third, err := rekognitionfake.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(third.Close)
	if got := third.Collections(); len(got) != 1 || len(third.Faces("devstack-faces")) != 3 {
		t.Fatalf("after the second restart: collections %v, faces %+v", got, third.Faces("devstack-faces"))
	}
	// Only the state file: every temporary file was renamed over it.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 || entries[0].Name() != "rekognition.json" {
		t.Fatalf("state directory holds %v (%v), want only rekognition.json", entries, err)
	}
}

// A change that cannot be saved is not made: the client gets a 5xx (which
// the SDK retries) and the emulator's state stays what the file holds.
func TestOpenUnsavedChangeIsUndone(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rekognition.json")
	srv, err := rekognitionfake.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	client := sdkClient(srv.URL)
	createCollection(t, client, "faces")

	// A non-empty directory where the file was: the rename cannot replace it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "blocked"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = client.IndexFaces(context.Background(), &rekognition.IndexFacesInput{CollectionId: aws.String("faces"), Image: &types.Image{Bytes: fixture(t, "grace_hopper.jpg")}})
	if apiCode(err) != "InternalServerError" {
		t.Fatalf("IndexFaces with an unwritable state file: %v, want InternalServerError", err)
	}
	if n := len(srv.Faces("faces")); n != 0 {
		t.Fatalf("unsaved face kept: %d faces", n)
	}
	if _, err := client.CreateCollection(context.Background(), &rekognition.CreateCollectionInput{CollectionId: aws.String("more")}); apiCode(err) != "InternalServerError" {
		t.Fatalf("CreateCollection: %v, want InternalServerError", err)
	}
	if srv.DeleteCollection("faces") {
		t.Fatal("DeleteCollection reported success without saving")
	}
	if got := srv.Collections(); len(got) != 1 || got[0] != "faces" {
		t.Fatalf("collections = %v, want [faces]", got)
	}
}

func TestOpenRefusesUnreadableState(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"not json":      "{",
		"other version": `{"version":2,"collections":[]}`,
		"bad digest":    `{"version":1,"collections":[{"id":"faces","faces":[{"face_id":"f","image_sha256":"abc"}]}]}`,
		"bad id":        `{"version":1,"collections":[{"id":"a b","faces":[]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rekognition.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := rekognitionfake.OpenEmulator(path); err == nil {
				t.Fatal("OpenEmulator accepted it")
			}
		})
	}
}
