package rekognitionlocal_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"

	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
)

func TestCollectionLifecycle(t *testing.T) {
	ctx := context.Background()
	srv := start(t, "")
	c := sdkClient(srv.url)

	created, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("drivers")})
	if err != nil {
		t.Fatalf("CreateCollection: %v", err)
	}
	if got, want := aws.ToString(created.CollectionArn), "aws:rekognition:eu-west-1:000000000000:collection/drivers"; got != want {
		t.Errorf("CollectionArn %q, want %q (the region the client signed for)", got, want)
	}
	if aws.ToInt32(created.StatusCode) != 200 || aws.ToString(created.FaceModelVersion) != rekognitionlocal.FaceModelVersion {
		t.Errorf("CreateCollection answered %+v", created)
	}
	if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("drivers")}); apiCode(err) != "ResourceAlreadyExistsException" {
		t.Errorf("second CreateCollection: %v, want ResourceAlreadyExistsException", err)
	}
	desc, err := c.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String("drivers")})
	if err != nil {
		t.Fatalf("DescribeCollection: %v", err)
	}
	if aws.ToInt64(desc.FaceCount) != 0 || desc.CreationTimestamp == nil || !strings.HasSuffix(aws.ToString(desc.CollectionARN), ":collection/drivers") {
		t.Errorf("DescribeCollection answered %+v", desc)
	}

	for _, id := range []string{"b-trucks", "a.vans", "c_cars"} {
		if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	var pages int
	for p := rekognition.NewListCollectionsPaginator(c, &rekognition.ListCollectionsInput{MaxResults: aws.Int32(3)}); p.HasMorePages(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListCollections: %v", err)
		}
		if len(page.FaceModelVersions) != len(page.CollectionIds) {
			t.Errorf("%d ids, %d model versions", len(page.CollectionIds), len(page.FaceModelVersions))
		}
		ids = append(ids, page.CollectionIds...)
		pages++
	}
	if want := []string{"a.vans", "b-trucks", "c_cars", "drivers"}; !slices.Equal(ids, want) || pages != 2 {
		t.Errorf("ListCollections: %v in %d pages, want %v in 2", ids, pages, want)
	}
	if _, err := c.ListCollections(ctx, &rekognition.ListCollectionsInput{NextToken: aws.String("%%%")}); apiCode(err) != "InvalidPaginationTokenException" {
		t.Errorf("ListCollections with a bad token: %v", err)
	}

	if _, err := c.DeleteCollection(ctx, &rekognition.DeleteCollectionInput{CollectionId: aws.String("drivers")}); err != nil {
		t.Fatalf("DeleteCollection: %v", err)
	}
	for name, call := range map[string]func() error{
		"DescribeCollection": func() error {
			_, err := c.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String("drivers")})
			return err
		},
		"DeleteCollection": func() error {
			_, err := c.DeleteCollection(ctx, &rekognition.DeleteCollectionInput{CollectionId: aws.String("drivers")})
			return err
		},
		"ListFaces": func() error {
			_, err := c.ListFaces(ctx, &rekognition.ListFacesInput{CollectionId: aws.String("drivers")})
			return err
		},
		"DeleteFaces": func() error {
			_, err := c.DeleteFaces(ctx, &rekognition.DeleteFacesInput{CollectionId: aws.String("drivers"), FaceIds: []string{"11111111-2222-3333-4444-555555555555"}})
			return err
		},
	} {
		if err := call(); apiCode(err) != "ResourceNotFoundException" || !strings.Contains(apiMessage(err), "drivers") {
			t.Errorf("%s on a deleted collection: %v, want ResourceNotFoundException", name, err)
		}
	}

	// Restarted on the same folder, the collections are still there.
	again := start(t, srv.dir)
	ids = nil
	out, err := sdkClient(again.url).ListCollections(ctx, &rekognition.ListCollectionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.vans", "b-trucks", "c_cars"}; !slices.Equal(out.CollectionIds, want) {
		t.Errorf("after a restart: %v, want %v", out.CollectionIds, want)
	}
}

func TestParameterValidation(t *testing.T) {
	ctx := context.Background()
	srv := start(t, "")
	c := sdkClient(srv.url)
	if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("drivers")}); err != nil {
		t.Fatal(err)
	}
	img := []byte("not checked before the parameters")
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"collection id with a slash", func() error {
			_, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("a/b")})
			return err
		}, "ValidationException"},
		{"external image id with a space", func() error {
			_, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: aws.String("drivers"), Image: imageOf(img), ExternalImageId: aws.String("a b")})
			return err
		}, "ValidationException"},
		{"threshold above 100", func() error {
			_, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: aws.String("drivers"), Image: imageOf(img), FaceMatchThreshold: aws.Float32(101)})
			return err
		}, "InvalidParameterException"},
		{"quality filter unknown", func() error {
			_, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: aws.String("drivers"), Image: imageOf(img), QualityFilter: "PERFECT"})
			return err
		}, "ValidationException"},
		{"face id not a UUID", func() error {
			_, err := c.DeleteFaces(ctx, &rekognition.DeleteFacesInput{CollectionId: aws.String("drivers"), FaceIds: []string{"face-1"}})
			return err
		}, "ValidationException"},
		{"list faces page too large", func() error {
			_, err := c.ListFaces(ctx, &rekognition.ListFacesInput{CollectionId: aws.String("drivers"), MaxResults: aws.Int32(5000)})
			return err
		}, "ValidationException"},
		{"index into a missing collection", func() error {
			_, err := c.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: aws.String("nobody"), Image: imageOf(img)})
			return err
		}, "ResourceNotFoundException"},
		{"search a missing collection", func() error {
			_, err := c.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: aws.String("nobody"), Image: imageOf(img)})
			return err
		}, "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); apiCode(err) != tt.code {
				t.Errorf("%v, want %s", err, tt.code)
			}
		})
	}
}

func TestWireProtocol(t *testing.T) {
	srv := start(t, "")
	const signed = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/ap-south-1/rekognition/aws4_request, SignedHeaders=host, Signature=00"
	tests := []struct {
		name, target, auth, body string
		status                   int
		code                     string
	}{
		{"unsigned", "RekognitionService.ListCollections", "", `{}`, http.StatusBadRequest, "MissingAuthenticationTokenException"},
		{"unknown operation", "RekognitionService.DetectLabels", signed, `{}`, http.StatusBadRequest, "UnknownOperationException"},
		{"foreign target", "DynamoDB_20120810.ListTables", signed, `{}`, http.StatusBadRequest, "UnknownOperationException"},
		{"malformed JSON", "RekognitionService.CreateCollection", signed, `{"CollectionId":`, http.StatusBadRequest, "SerializationException"},
		{"no image", "RekognitionService.DetectFaces", signed, `{}`, http.StatusBadRequest, "InvalidParameterException"},
		{"S3 object", "RekognitionService.DetectFaces", signed, `{"Image":{"S3Object":{"Bucket":"b","Name":"n"}}}`, http.StatusBadRequest, "InvalidS3ObjectException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := post(t, srv.url, tt.target, tt.auth, []byte(tt.body))
			if resp.StatusCode != tt.status || out["__type"] != tt.code || out["message"] == "" {
				t.Errorf("%d %v, want %d %s", resp.StatusCode, out, tt.status, tt.code)
			}
			if h := resp.Header.Get("X-Amzn-ErrorType"); !strings.HasPrefix(h, tt.code+":") {
				t.Errorf("X-Amzn-ErrorType %q", h)
			}
		})
	}
	resp, out := post(t, srv.url, "RekognitionService.CreateCollection", signed, []byte(`{"CollectionId":"x"}`))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-amz-json-1.1" || resp.Header.Get("X-Amzn-RequestId") == "" {
		t.Errorf("CreateCollection: %d %v %v", resp.StatusCode, resp.Header, out)
	}
	if out["CollectionArn"] != "aws:rekognition:ap-south-1:000000000000:collection/x" {
		t.Errorf("CollectionArn %v, want the signed region's", out["CollectionArn"])
	}
}

func TestStateFile(t *testing.T) {
	ctx := context.Background()
	t.Run("an unreadable state is refused", func(t *testing.T) {
		for name, content := range map[string]string{
			"not JSON":       "{",
			"other version":  `{"version":9,"collections":[]}`,
			"bad descriptor": `{"version":1,"collections":[{"id":"a","faces":[{"face_id":"f","descriptor":"AAAA"}]}]}`,
			"bad id":         `{"version":1,"collections":[{"id":"a/b","faces":[]}]}`,
		} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, rekognitionlocal.StateFile), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := rekognitionlocal.New(rekognitionlocal.Options{Dir: dir, Engine: sharedEngine(t)}); err == nil || !strings.Contains(err.Error(), rekognitionlocal.StateFile) {
				t.Errorf("%s: New = %v, want an error naming the file", name, err)
			}
		}
	})
	t.Run("a change that cannot be saved is undone", func(t *testing.T) {
		srv := start(t, "")
		c := sdkClient(srv.url)
		// A non-empty directory where the state file goes: the rename fails,
		// also for root.
		path := filepath.Join(srv.dir, rekognitionlocal.StateFile)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(path, "blocker"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("drivers")}); apiCode(err) != "InternalServerError" {
			t.Fatalf("CreateCollection with an unwritable state: %v, want InternalServerError", err)
		}
		if _, err := c.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String("drivers")}); apiCode(err) != "ResourceNotFoundException" {
			t.Errorf("the unsaved collection exists: %v", err)
		}
	})
	t.Run("no folder", func(t *testing.T) {
		if _, err := rekognitionlocal.New(rekognitionlocal.Options{Engine: sharedEngine(t)}); err == nil {
			t.Error("New without a folder succeeded")
		}
	})
}
