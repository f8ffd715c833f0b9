// Package rekognitionwire is what the two local Rekognition servers share
// of the Rekognition API above the awsJson1_1 framing (package awsjson):
// the operations' inputs and their validation, with Rekognition's exception
// names and messages; the Face and BoundingBox shapes; the collections and
// their bookkeeping; and the file the collections persist in. The test
// double (internal/rekognitionfake) and the product (rekognitionlocal)
// differ in how they see faces, not in what a collection id or an answer
// looks like, so that part is written once here.
package rekognitionwire

import (
	"regexp"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// AccountID appears in the collection ARNs both servers answer.
const AccountID = "000000000000"

// Rekognition's defaults and bounds for the operations' inputs.
const (
	// DefaultMatchThreshold is SearchFacesByImage's FaceMatchThreshold.
	DefaultMatchThreshold = 80.0
	// MaxSearchFaces bounds SearchFacesByImage's MaxFaces, and is its default.
	MaxSearchFaces = 4096
	// DefaultIndexMaxFaces is how many faces IndexFaces indexes at most when
	// MaxFaces is not given.
	DefaultIndexMaxFaces = 100
)

// NoFaceMessage is how Rekognition words an image without a face to search.
const NoFaceMessage = "There are no faces in the image. Should be at least 1."

var (
	collectionIDPattern    = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,255}$`)
	externalImageIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-:]{1,255}$`)
)

// CheckCollectionID answers ValidationException for an id Rekognition
// would refuse.
func CheckCollectionID(id string) *awsjson.Error {
	if !collectionIDPattern.MatchString(id) {
		return awsjson.Errorf("ValidationException", "1 validation error detected: Value '%s' at 'collectionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+", id)
	}
	return nil
}

// NotFound is the answer for a collection that does not exist.
func NotFound(id string) *awsjson.Error {
	return awsjson.Errorf("ResourceNotFoundException", "The collection id: %s does not exist", id)
}

// InvalidParameters is Rekognition's answer for an input out of its range.
func InvalidParameters() *awsjson.Error {
	return awsjson.Errorf("InvalidParameterException", "Request has invalid parameters")
}

// NoFace is the answer for an image without a face to search.
func NoFace() *awsjson.Error {
	return awsjson.Errorf("InvalidParameterException", NoFaceMessage)
}

// ARN is the ARN of collection id in region.
func ARN(region, id string) string {
	return "aws:rekognition:" + region + ":" + AccountID + ":collection/" + id
}

// CollectionArg decodes and checks the input of an operation taking only a
// CollectionId (CreateCollection, DescribeCollection, DeleteCollection).
func CollectionArg(body []byte) (string, *awsjson.Error) {
	var in struct{ CollectionId string }
	if err := awsjson.Decode(body, &in); err != nil {
		return "", err
	}
	return in.CollectionId, CheckCollectionID(in.CollectionId)
}

// ImageInput is Rekognition's Image: the bytes, or an S3 object.
type ImageInput struct {
	Bytes    []byte
	S3Object any
}

// Check answers an image given neither way (InvalidParameterException) or
// as an S3 object (InvalidS3ObjectException with s3Message: neither server
// reads S3); what the bytes hold is for the caller to judge.
func (in *ImageInput) Check(s3Message string) *awsjson.Error {
	if in == nil || (in.Bytes == nil && in.S3Object == nil) {
		return InvalidParameters()
	}
	if in.S3Object != nil {
		return awsjson.Errorf("InvalidS3ObjectException", "%s", s3Message)
	}
	return nil
}

// SearchInput is SearchFacesByImage's input.
type SearchInput struct {
	CollectionId       string
	Image              *ImageInput
	FaceMatchThreshold *float64
	MaxFaces           *int
	QualityFilter      *string
}

// DecodeSearch decodes SearchFacesByImage's input and checks its
// collection id; Limits checks the rest, so that each server keeps the
// order in which it reports what is wrong.
func DecodeSearch(body []byte) (in SearchInput, aerr *awsjson.Error) {
	if aerr = awsjson.Decode(body, &in); aerr == nil {
		aerr = CheckCollectionID(in.CollectionId)
	}
	return in, aerr
}

// Limits are the similarity threshold and the number of matches asked
// for, with Rekognition's defaults, or InvalidParameterException.
func (in *SearchInput) Limits() (threshold float64, maxFaces int, aerr *awsjson.Error) {
	threshold, maxFaces = DefaultMatchThreshold, MaxSearchFaces
	if in.FaceMatchThreshold != nil {
		threshold = *in.FaceMatchThreshold
	}
	if in.MaxFaces != nil {
		maxFaces = *in.MaxFaces
	}
	if threshold < 0 || threshold > 100 || maxFaces < 1 || maxFaces > MaxSearchFaces {
		return 0, 0, InvalidParameters()
	}
	return threshold, maxFaces, nil
}

// Quality is the QualityFilter asked for; SearchFacesByImage's default is
// NONE.
func (in *SearchInput) Quality() string { return stringOr(in.QualityFilter, "NONE") }

// IndexInput is IndexFaces' input.
type IndexInput struct {
	CollectionId    string
	Image           *ImageInput
	ExternalImageId *string
	MaxFaces        *int
	QualityFilter   *string
}

// DecodeIndex decodes IndexFaces' input and checks its collection id,
// ExternalImageId and MaxFaces.
func DecodeIndex(body []byte) (in IndexInput, aerr *awsjson.Error) {
	if aerr = awsjson.Decode(body, &in); aerr != nil {
		return in, aerr
	}
	if aerr = CheckCollectionID(in.CollectionId); aerr != nil {
		return in, aerr
	}
	if in.ExternalImageId != nil && !externalImageIDPattern.MatchString(*in.ExternalImageId) {
		return in, awsjson.Errorf("ValidationException", "1 validation error detected: Value '%s' at 'externalImageId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+", *in.ExternalImageId)
	}
	if in.MaxFaces != nil && *in.MaxFaces < 1 {
		return in, InvalidParameters()
	}
	return in, nil
}

// FaceLimit is how many faces to index at most.
func (in *IndexInput) FaceLimit() int {
	if in.MaxFaces != nil {
		return *in.MaxFaces
	}
	return DefaultIndexMaxFaces
}

// ExternalImageID is the ExternalImageId asked for, or "".
func (in *IndexInput) ExternalImageID() string { return stringOr(in.ExternalImageId, "") }

// Quality is the QualityFilter asked for; IndexFaces' default is AUTO.
func (in *IndexInput) Quality() string { return stringOr(in.QualityFilter, "AUTO") }

func stringOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
