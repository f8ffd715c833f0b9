package rekognitionlocal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/draw"
	"image/png"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"

	"github.com/challenge-v3/challenge-v3/internal/facetest"
	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
)

func imageOf(b []byte) *types.Image { return &types.Image{Bytes: b} }

// TestRecognitionThroughSDK walks the operations the worker uses, and the
// rest of the collection API, with real photos through the real SDK.
func TestRecognitionThroughSDK(t *testing.T) {
	ctx := context.Background()
	srv, c, col := startWithCollection(t)
	grace := facetest.Bytes(t, facetest.GraceHopper)
	astronaut := facetest.Bytes(t, facetest.Astronaut)
	coffee := facetest.Bytes(t, facetest.Coffee)
	altered := facetest.Altered(t)

	// IndexFaces: one face, with a real box and confidence.
	indexed, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{
		CollectionId: col, Image: imageOf(grace), ExternalImageId: aws.String("truck-7:msg-1"),
		MaxFaces: aws.Int32(1), QualityFilter: types.QualityFilterAuto,
	})
	if err != nil {
		t.Fatalf("IndexFaces: %v", err)
	}
	if len(indexed.FaceRecords) != 1 || len(indexed.UnindexedFaces) != 0 {
		t.Fatalf("IndexFaces: %d records, %d unindexed; want 1, 0", len(indexed.FaceRecords), len(indexed.UnindexedFaces))
	}
	rec := indexed.FaceRecords[0]
	graceID := aws.ToString(rec.Face.FaceId)
	box := rec.Face.BoundingBox
	if aws.ToString(rec.Face.ExternalImageId) != "truck-7:msg-1" || aws.ToFloat32(rec.Face.Confidence) < 90 ||
		aws.ToFloat32(box.Left) < 0.2 || aws.ToFloat32(box.Left)+aws.ToFloat32(box.Width) > 0.8 || aws.ToFloat32(box.Width) < 0.2 {
		t.Errorf("indexed face %+v, box %+v", rec.Face, *box)
	}
	if len(rec.FaceDetail.Landmarks) != 5 {
		t.Errorf("%d landmarks, want the 5 basic ones", len(rec.FaceDetail.Landmarks))
	}

	// SearchFacesByImage, as the worker sends it: an altered copy matches.
	search := func(img []byte, threshold float32) (*rekognition.SearchFacesByImageOutput, error) {
		return c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{
			CollectionId: col, Image: imageOf(img), FaceMatchThreshold: aws.Float32(threshold),
			MaxFaces: aws.Int32(1), QualityFilter: types.QualityFilterNone,
		})
	}
	found, err := search(altered, 90)
	if err != nil {
		t.Fatalf("SearchFacesByImage: %v", err)
	}
	if len(found.FaceMatches) != 1 || aws.ToString(found.FaceMatches[0].Face.FaceId) != graceID || aws.ToFloat32(found.FaceMatches[0].Similarity) < 99 {
		t.Fatalf("altered copy: matches %+v, want %s at 99+", found.FaceMatches, graceID)
	}
	t.Logf("altered copy: similarity %.4f", aws.ToFloat32(found.FaceMatches[0].Similarity))
	if aws.ToFloat32(found.SearchedFaceConfidence) < 50 || found.SearchedFaceBoundingBox == nil {
		t.Errorf("searched face %v %+v", found.SearchedFaceConfidence, found.SearchedFaceBoundingBox)
	}

	// Another person does not match, even at Rekognition's default threshold.
	other, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: col, Image: imageOf(astronaut)})
	if err != nil {
		t.Fatalf("SearchFacesByImage: %v", err)
	}
	if len(other.FaceMatches) != 0 {
		t.Errorf("astronaut matches %+v", other.FaceMatches)
	}
	if _, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: col, Image: imageOf(astronaut), ExternalImageId: aws.String("truck-8")}); err != nil {
		t.Fatal(err)
	}

	// No face: the search answers InvalidParameterException, DetectFaces
	// nothing, IndexFaces no record.
	if _, err := search(coffee, 90); apiCode(err) != "InvalidParameterException" || apiMessage(err) != "There are no faces in the image. Should be at least 1." {
		t.Errorf("search without a face: %v", err)
	}
	none, err := c.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: imageOf(coffee)})
	if err != nil || len(none.FaceDetails) != 0 {
		t.Errorf("DetectFaces(coffee) = %+v, %v; want no face", none, err)
	}
	one, err := c.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: imageOf(astronaut)})
	if err != nil || len(one.FaceDetails) != 1 || len(one.FaceDetails[0].Landmarks) != 5 {
		t.Errorf("DetectFaces(astronaut) = %+v, %v; want one face with landmarks", one, err)
	}

	// ListFaces pages through both, in the order they were indexed.
	var listed []string
	for p := rekognition.NewListFacesPaginator(c, &rekognition.ListFacesInput{CollectionId: col, MaxResults: aws.Int32(1)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListFaces: %v", err)
		}
		for _, f := range page.Faces {
			listed = append(listed, aws.ToString(f.ExternalImageId))
		}
	}
	if len(listed) != 2 || listed[0] != "truck-7:msg-1" || listed[1] != "truck-8" {
		t.Errorf("ListFaces: %v", listed)
	}

	// After a restart on the same folder the faces are still recognised.
	again := sdkClient(start(t, srv.dir).url)
	found, err = again.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: col, Image: imageOf(altered), FaceMatchThreshold: aws.Float32(90)})
	if err != nil || len(found.FaceMatches) != 1 || aws.ToString(found.FaceMatches[0].Face.FaceId) != graceID {
		t.Fatalf("after a restart: %+v, %v", found, err)
	}

	// DeleteFaces removes the face; an unknown id is reported, not an error.
	const unknown = "00000000-0000-4000-8000-000000000000"
	deleted, err := again.DeleteFaces(ctx, &rekognition.DeleteFacesInput{CollectionId: col, FaceIds: []string{graceID, unknown}})
	if err != nil {
		t.Fatalf("DeleteFaces: %v", err)
	}
	if len(deleted.DeletedFaces) != 1 || deleted.DeletedFaces[0] != graceID ||
		len(deleted.UnsuccessfulFaceDeletions) != 1 || aws.ToString(deleted.UnsuccessfulFaceDeletions[0].FaceId) != unknown {
		t.Errorf("DeleteFaces: %+v", deleted)
	}
	desc, err := again.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: col})
	if err != nil || aws.ToInt64(desc.FaceCount) != 1 {
		t.Errorf("DescribeCollection after DeleteFaces: %+v, %v", desc, err)
	}
}

// pngDeclaring returns a small valid PNG whose header declares w×h.
func pngDeclaring(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// TestBadImages: every image operation answers bad bytes as Rekognition
// does, never with a 500 or a dropped connection.
func TestBadImages(t *testing.T) {
	ctx := context.Background()
	_, c, col := startWithCollection(t)
	grace := facetest.Bytes(t, facetest.GraceHopper)
	var tiny bytes.Buffer
	if err := png.Encode(&tiny, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	small := facetest.JPEG(t, facetest.Resize(facetest.Decode(t, facetest.GraceHopper), 79, 79), 90)
	tests := []struct {
		name string
		data []byte
		code string
		only string // the one operation to try, when trying all is slow
	}{
		{"truncated JPEG", grace[:len(grace)/2], "InvalidImageFormatException", ""},
		{"text", []byte("hello"), "InvalidImageFormatException", ""},
		{"1×1 PNG", tiny.Bytes(), "InvalidParameterException", ""},
		{"79×79 JPEG (under Rekognition's 80 px)", small, "InvalidParameterException", ""},
		{"PNG declaring 100000×100000", pngDeclaring(t, 100000, 100000), "ImageTooLargeException", ""},
		{"PNG declaring 10001×100", pngDeclaring(t, 10001, 100), "ImageTooLargeException", ""},
		{"5 MiB and one byte", append(bytes.Clone(grace), make([]byte, 5<<20-len(grace)+1)...), "ImageTooLargeException", "DetectFaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := map[string]func() error{
				"IndexFaces": func() error {
					_, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: col, Image: imageOf(tt.data)})
					return err
				},
				"SearchFacesByImage": func() error {
					_, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: col, Image: imageOf(tt.data)})
					return err
				},
				"DetectFaces": func() error {
					_, err := c.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: imageOf(tt.data)})
					return err
				},
			}
			for op, call := range calls {
				if tt.only != "" && op != tt.only {
					continue
				}
				if err := call(); apiCode(err) != tt.code {
					t.Errorf("%s: %v, want %s", op, err, tt.code)
				}
			}
		})
	}
}

// TestMaxFaces: of two faces side by side, MaxFaces 1 indexes the larger.
func TestMaxFaces(t *testing.T) {
	ctx := context.Background()
	_, c, col := startWithCollection(t)
	// grace_hopper next to the astronaut, whose face is half the size.
	pair := image.NewNRGBA(image.Rect(0, 0, 1024, 512))
	paste := func(img image.Image, x, y int) {
		draw.Draw(pair, img.Bounds().Add(image.Pt(x, y)), img, img.Bounds().Min, draw.Src)
	}
	paste(facetest.Decode(t, facetest.GraceHopper), 0, 0)
	paste(facetest.Decode(t, facetest.Astronaut), 512, 0)
	both := facetest.JPEG(t, pair, 90)

	out, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: col, Image: imageOf(both), MaxFaces: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.FaceRecords) != 1 || len(out.UnindexedFaces) != 1 || out.UnindexedFaces[0].Reasons[0] != types.ReasonExceedsMaxFaces {
		t.Fatalf("MaxFaces 1 on two faces: %d records, unindexed %+v", len(out.FaceRecords), out.UnindexedFaces)
	}
	if l := aws.ToFloat32(out.FaceRecords[0].Face.BoundingBox.Left); l > 0.4 {
		t.Errorf("indexed the face at left %.2f, want the larger one on the left", l)
	}
	det, err := c.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: imageOf(both)})
	if err != nil || len(det.FaceDetails) != 2 {
		t.Fatalf("DetectFaces: %+v, %v; want 2 faces", det, err)
	}
	t.Logf("confidences %.1f, %.1f", aws.ToFloat32(det.FaceDetails[0].Confidence), aws.ToFloat32(det.FaceDetails[1].Confidence))
}

func TestServeStopsWithItsContext(t *testing.T) {
	srv := start(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c := sdkClient("http://" + ln.Addr().String())
	if _, err := c.ListCollections(ctx, &rekognition.ListCollectionsInput{}); err != nil {
		t.Fatalf("ListCollections: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if err := rekognitionlocal.Run(context.Background(), rekognitionlocal.Config{Addr: "127.0.0.1:-1", Dir: t.TempDir()}, discard()); err == nil {
		t.Error("Run on an invalid address succeeded")
	}
}
