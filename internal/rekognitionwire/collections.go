package rekognitionwire

import (
	"maps"
	"slices"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// Collection is a face collection; F is the server's face (a digest for
// the test double, a descriptor for the product).
type Collection[F any] struct {
	ID      string
	Created time.Time
	Faces   []F // in indexing order
}

// Collections are a server's collections by id. They are not safe for
// concurrent use: the server guards them with its own lock. The changes
// return an undo, for a server to revert a change it could not persist.
type Collections[F any] map[string]*Collection[F]

// Get is collection id, or ResourceNotFoundException.
func (cs Collections[F]) Get(id string) (*Collection[F], *awsjson.Error) {
	c, ok := cs[id]
	if !ok {
		return nil, NotFound(id)
	}
	return c, nil
}

// Create adds the empty collection id, or answers
// ResourceAlreadyExistsException.
func (cs Collections[F]) Create(id string, created time.Time) (undo func(), aerr *awsjson.Error) {
	if _, ok := cs[id]; ok {
		return nil, awsjson.Errorf("ResourceAlreadyExistsException", "The collection id: %s already exists", id)
	}
	cs[id] = &Collection[F]{ID: id, Created: created}
	return func() { delete(cs, id) }, nil
}

// Delete removes collection id, or answers ResourceNotFoundException.
func (cs Collections[F]) Delete(id string) (undo func(), aerr *awsjson.Error) {
	c, aerr := cs.Get(id)
	if aerr != nil {
		return nil, aerr
	}
	delete(cs, id)
	return func() { cs[id] = c }, nil
}

// IDs lists the collection ids, sorted.
func (cs Collections[F]) IDs() []string { return slices.Sorted(maps.Keys(cs)) }

// CreateOutput is CreateCollection's answer for the collection at arn.
func CreateOutput(arn, modelVersion string) map[string]any {
	return map[string]any{
		"CollectionArn":    arn,
		"FaceModelVersion": modelVersion,
		"StatusCode":       200,
	}
}

// DescribeOutput is DescribeCollection's answer for c, at arn.
func (c *Collection[F]) DescribeOutput(arn, modelVersion string) map[string]any {
	return map[string]any{
		"CollectionARN":     arn,
		"CreationTimestamp": float64(c.Created.UnixMilli()) / 1000,
		"FaceCount":         len(c.Faces),
		"FaceModelVersion":  modelVersion,
		"UserCount":         0,
	}
}
