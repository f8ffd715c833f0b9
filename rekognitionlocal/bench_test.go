package rekognitionlocal_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"

	"github.com/challenge-v3/challenge-v3/internal/facetest"
)

// withComment returns the JPEG with a comment segment after its
// start-of-image marker: the same picture in new bytes, which no cache
// has seen.
func withComment(jpg []byte, comment string) []byte {
	n := len(comment) + 2
	seg := append([]byte{0xFF, 0xFE, byte(n >> 8), byte(n)}, comment...)
	return append(append(append([]byte{}, jpg[:2]...), seg...), jpg[2:]...)
}

// BenchmarkWorkerNewFace is the worker's path for a photo of someone not in
// the collection: SearchFacesByImage (no match), then IndexFaces, through
// the SDK and HTTP.
func BenchmarkWorkerNewFace(b *testing.B) {
	ctx := context.Background()
	srv := start(b, "")
	c := sdkClient(srv.url)
	grace := facetest.Bytes(b, facetest.GraceHopper)
	i := 0
	for b.Loop() {
		i++
		col := aws.String(fmt.Sprint("c", i))
		img := withComment(grace, fmt.Sprint(i))
		if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: col}); err != nil {
			b.Fatal(err)
		}
		out, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: col, Image: imageOf(img), FaceMatchThreshold: aws.Float32(90), MaxFaces: aws.Int32(1)})
		if err != nil || len(out.FaceMatches) != 0 {
			b.Fatal(out, err)
		}
		idx, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: col, Image: imageOf(img), MaxFaces: aws.Int32(1), QualityFilter: types.QualityFilterAuto})
		if err != nil || len(idx.FaceRecords) != 1 {
			b.Fatal(idx, err)
		}
	}
}

// BenchmarkWorkerKnownFace is the worker's path for a new photo of someone
// in the collection: one SearchFacesByImage.
func BenchmarkWorkerKnownFace(b *testing.B) {
	ctx := context.Background()
	srv := start(b, "")
	c := sdkClient(srv.url)
	grace := facetest.Bytes(b, facetest.GraceHopper)
	col := aws.String("drivers")
	if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: col}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: col, Image: imageOf(grace)}); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		out, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: col, Image: imageOf(withComment(grace, fmt.Sprint(i))), FaceMatchThreshold: aws.Float32(90), MaxFaces: aws.Int32(1)})
		if err != nil || len(out.FaceMatches) != 1 {
			b.Fatal(out, err)
		}
	}
}
