package rekognitionlocal

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"slices"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The collection operations: CreateCollection, DescribeCollection,
// ListCollections, DeleteCollection, ListFaces and DeleteFaces.

var faceIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

const (
	maxListResults     = 4096
	defaultListResults = 1000
)

func (f face) json() rekognitionwire.Face {
	return rekognitionwire.Face{
		FaceId:                 f.id,
		BoundingBox:            f.box,
		ImageId:                f.imageID,
		ExternalImageId:        f.externalImageID,
		Confidence:             f.confidence,
		IndexFacesModelVersion: FaceModelVersion,
	}
}

func (s *Server) createCollection(_ *http.Request, c call) (any, *apiError) {
	id, aerr := rekognitionwire.CollectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.change(func() (func(), *apiError) { return s.collections.Create(id, s.now().UTC()) }); aerr != nil {
		return nil, aerr
	}
	return rekognitionwire.CreateOutput(rekognitionwire.ARN(c.region, id), FaceModelVersion), nil
}

func (s *Server) describeCollection(_ *http.Request, c call) (any, *apiError) {
	id, aerr := rekognitionwire.CollectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	col, aerr := s.collections.Get(id)
	if aerr != nil {
		return nil, aerr
	}
	return col.DescribeOutput(rekognitionwire.ARN(c.region, col.ID), FaceModelVersion), nil
}

func (s *Server) deleteCollection(_ *http.Request, c call) (any, *apiError) {
	id, aerr := rekognitionwire.CollectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.change(func() (func(), *apiError) { return s.collections.Delete(id) }); aerr != nil {
		return nil, aerr
	}
	return map[string]any{"StatusCode": 200}, nil
}

// pageInput is the paging input of the List operations.
type pageInput struct {
	MaxResults *int
	NextToken  *string
}

// page is the page size, MaxResults within Rekognition's 0–4096 (absent or
// 0: 1000), and the key of the first item, from NextToken ("": the first).
func (in pageInput) page() (n int, from string, aerr *apiError) {
	switch max := in.MaxResults; {
	case max == nil || *max == 0:
		n = defaultListResults
	case *max < 0 || *max > maxListResults:
		return 0, "", errorf("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 0 and 4096", *max)
	default:
		n = *max
	}
	from, aerr = untoken(in.NextToken)
	return n, from, aerr
}

// Pagination tokens are the key of the next item, opaque to clients.
func token(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func untoken(t *string) (string, *apiError) {
	if t == nil {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(*t)
	if err != nil || len(b) == 0 {
		return "", errorf("InvalidPaginationTokenException", "Invalid pagination token")
	}
	return string(b), nil
}

func (s *Server) listCollections(_ *http.Request, c call) (any, *apiError) {
	var in pageInput
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	n, from, aerr := in.page()
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	ids := s.collections.IDs()
	s.mu.Unlock()
	start, _ := slices.BinarySearch(ids, from)
	ids = ids[start:]
	out := map[string]any{}
	if len(ids) > n {
		out["NextToken"] = token(ids[n])
		ids = ids[:n]
	}
	versions := make([]string, len(ids))
	for i := range versions {
		versions[i] = FaceModelVersion
	}
	out["CollectionIds"] = ids
	out["FaceModelVersions"] = versions
	return out, nil
}

func (s *Server) listFaces(_ *http.Request, c call) (any, *apiError) {
	var in struct {
		CollectionId string
		pageInput
		FaceIds []string
	}
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	if err := rekognitionwire.CheckCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	n, from, aerr := in.page()
	if aerr != nil {
		return nil, aerr
	}
	for _, id := range in.FaceIds {
		if err := checkFaceID(id); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	col, aerr := s.collections.Get(in.CollectionId)
	if aerr != nil {
		return nil, aerr
	}
	faces := col.Faces
	if from != "" {
		i := slices.IndexFunc(faces, func(f face) bool { return f.id == from })
		if i < 0 {
			return nil, errorf("InvalidPaginationTokenException", "Invalid pagination token")
		}
		faces = faces[i:]
	}
	list := []rekognitionwire.Face{}
	out := map[string]any{"FaceModelVersion": FaceModelVersion}
	for _, f := range faces {
		if len(in.FaceIds) > 0 && !slices.Contains(in.FaceIds, f.id) {
			continue
		}
		if len(list) == n {
			out["NextToken"] = token(f.id)
			break
		}
		list = append(list, f.json())
	}
	out["Faces"] = list
	return out, nil
}

func checkFaceID(id string) *apiError {
	if !faceIDPattern.MatchString(id) {
		return errorf("ValidationException", "1 validation error detected: Value '%s' at 'faceIds' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", id)
	}
	return nil
}

func (s *Server) deleteFaces(_ *http.Request, c call) (any, *apiError) {
	var in struct {
		CollectionId string
		FaceIds      []string
	}
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	if err := rekognitionwire.CheckCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	if len(in.FaceIds) < 1 || len(in.FaceIds) > maxListResults {
		return nil, errorf("ValidationException", "1 validation error detected: Value at 'faceIds' failed to satisfy constraint: Member must have length between 1 and 4096")
	}
	for _, id := range in.FaceIds {
		if err := checkFaceID(id); err != nil {
			return nil, err
		}
	}
	deleted := []string{}
	type failure struct {
		FaceId  string
		Reasons []string
	}
	failed := []failure{}
	err := s.change(func() (func(), *apiError) {
		col, aerr := s.collections.Get(in.CollectionId)
		if aerr != nil {
			return nil, aerr
		}
		before := col.Faces
		kept := make([]face, 0, len(col.Faces))
		for _, f := range col.Faces {
			if slices.Contains(in.FaceIds, f.id) {
				deleted = append(deleted, f.id)
				continue
			}
			kept = append(kept, f)
		}
		col.Faces = kept
		return func() { col.Faces = before }, nil
	})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, id := range in.FaceIds {
		if !slices.Contains(deleted, id) && !seen[id] {
			seen[id] = true
			failed = append(failed, failure{FaceId: id, Reasons: []string{"FACE_NOT_FOUND"}})
		}
	}
	return map[string]any{"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}, nil
}
