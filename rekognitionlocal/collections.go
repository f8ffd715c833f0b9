package rekognitionlocal

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"slices"
)

// The collection operations: CreateCollection, DescribeCollection,
// ListCollections, DeleteCollection, ListFaces and DeleteFaces.

var (
	collectionIDPattern    = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,255}$`)
	externalImageIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-:]{1,255}$`)
	faceIDPattern          = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

const (
	maxListResults     = 4096
	defaultListResults = 1000
)

func checkCollectionID(id string) *apiError {
	if !collectionIDPattern.MatchString(id) {
		return errorf("ValidationException", "1 validation error detected: Value '%s' at 'collectionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+", id)
	}
	return nil
}

func notFound(id string) *apiError {
	return errorf("ResourceNotFoundException", "The collection id: %s does not exist", id)
}

func arn(region, id string) string {
	return "aws:rekognition:" + region + ":" + AccountID + ":collection/" + id
}

// faceJSON is Rekognition's Face shape.
type faceJSON struct {
	FaceId                 string
	BoundingBox            boundingBox
	ImageId                string
	ExternalImageId        string `json:",omitempty"`
	Confidence             float64
	IndexFacesModelVersion string
}

func (f face) json() faceJSON {
	return faceJSON{
		FaceId:                 f.id,
		BoundingBox:            f.box,
		ImageId:                f.imageID,
		ExternalImageId:        f.externalImageID,
		Confidence:             f.confidence,
		IndexFacesModelVersion: FaceModelVersion,
	}
}

type collectionInput struct{ CollectionId string }

func (s *Server) createCollection(_ *http.Request, c call) (any, *apiError) {
	in, aerr := collectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	err := s.change(func() (func(), *apiError) {
		if _, ok := s.collections[in.CollectionId]; ok {
			return nil, errorf("ResourceAlreadyExistsException", "The collection id: %s already exists", in.CollectionId)
		}
		s.collections[in.CollectionId] = &collection{id: in.CollectionId, created: s.now().UTC()}
		return func() { delete(s.collections, in.CollectionId) }, nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"CollectionArn":    arn(c.region, in.CollectionId),
		"FaceModelVersion": FaceModelVersion,
		"StatusCode":       200,
	}, nil
}

func (s *Server) describeCollection(_ *http.Request, c call) (any, *apiError) {
	in, aerr := collectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	col, ok := s.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	return map[string]any{
		"CollectionARN":     arn(c.region, col.id),
		"CreationTimestamp": float64(col.created.UnixMilli()) / 1000,
		"FaceCount":         len(col.faces),
		"FaceModelVersion":  FaceModelVersion,
		"UserCount":         0,
	}, nil
}

func (s *Server) deleteCollection(_ *http.Request, c call) (any, *apiError) {
	in, aerr := collectionArg(c.body)
	if aerr != nil {
		return nil, aerr
	}
	err := s.change(func() (func(), *apiError) {
		col, ok := s.collections[in.CollectionId]
		if !ok {
			return nil, notFound(in.CollectionId)
		}
		delete(s.collections, in.CollectionId)
		return func() { s.collections[in.CollectionId] = col }, nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"StatusCode": 200}, nil
}

// pageSize is MaxResults within Rekognition's 0–4096 (absent or 0: 1000).
func pageSize(max *int) (int, *apiError) {
	switch {
	case max == nil || *max == 0:
		return defaultListResults, nil
	case *max < 0 || *max > maxListResults:
		return 0, errorf("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 0 and 4096", *max)
	}
	return *max, nil
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
	var in struct {
		MaxResults *int
		NextToken  *string
	}
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	n, aerr := pageSize(in.MaxResults)
	if aerr != nil {
		return nil, aerr
	}
	from, aerr := untoken(in.NextToken)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.collections))
	for id := range s.collections {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
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
		MaxResults   *int
		NextToken    *string
		FaceIds      []string
	}
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	n, aerr := pageSize(in.MaxResults)
	if aerr != nil {
		return nil, aerr
	}
	from, aerr := untoken(in.NextToken)
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
	col, ok := s.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	faces := col.faces
	if from != "" {
		i := slices.IndexFunc(faces, func(f face) bool { return f.id == from })
		if i < 0 {
			return nil, errorf("InvalidPaginationTokenException", "Invalid pagination token")
		}
		faces = faces[i:]
	}
	list := []faceJSON{}
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
	if err := checkCollectionID(in.CollectionId); err != nil {
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
		col, ok := s.collections[in.CollectionId]
		if !ok {
			return nil, notFound(in.CollectionId)
		}
		before := col.faces
		kept := make([]face, 0, len(col.faces))
		for _, f := range col.faces {
			if slices.Contains(in.FaceIds, f.id) {
				deleted = append(deleted, f.id)
				continue
			}
			kept = append(kept, f)
		}
		col.faces = kept
		return func() { col.faces = before }, nil
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

// collectionArg decodes and checks the input of an operation taking only a
// CollectionId.
func collectionArg(body []byte) (in collectionInput, err *apiError) {
	if err = decode(body, &in); err == nil {
		err = checkCollectionID(in.CollectionId)
	}
	return in, err
}
