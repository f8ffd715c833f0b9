package services

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Outcome label values of rekognition_calls_total.
const (
	outcomeSuccess       = "success"
	outcomeNoFace        = "no_face"        // SearchFacesByImage: the image has no face (confirmed by DetectFaces)
	outcomeAlreadyExists = "already_exists" // CreateCollection: tolerated
	outcomeNotFound      = "not_found"      // DescribeCollection at start-up: expected
	outcomeThrottled     = "throttled"
	outcomeUnavailable   = "unavailable"
	outcomeInvalid       = "invalid"
	outcomeMisconfigured = "misconfigured"
	outcomeError         = "error" // unexpected (ierr.Internal)
)

// failureOutcomes are the outcomes classify can give a failed operation.
var failureOutcomes = []string{outcomeThrottled, outcomeUnavailable, outcomeInvalid, outcomeMisconfigured, outcomeError}

// Rekognition error codes this package tells apart.
const (
	codeInvalidParameter      = "InvalidParameterException"
	codeResourceNotFound      = "ResourceNotFoundException"
	codeResourceAlreadyExists = "ResourceAlreadyExistsException"
)

// errorCodeKinds maps Rekognition (and generic AWS) error codes to what the
// caller should do. Codes absent here are decided by fault: server → retry,
// client → misconfigured (see classify).
var errorCodeKinds = map[string]struct {
	kind    ierr.Kind
	outcome string
}{
	// Throttling: the SDK retries these itself first.
	"ThrottlingException":                    {ierr.Unavailable, outcomeThrottled},
	"ProvisionedThroughputExceededException": {ierr.Unavailable, outcomeThrottled},
	"LimitExceededException":                 {ierr.Unavailable, outcomeThrottled},
	"TooManyRequestsException":               {ierr.Unavailable, outcomeThrottled},
	// Server side trouble.
	"InternalServerError":         {ierr.Unavailable, outcomeUnavailable},
	"InternalFailure":             {ierr.Unavailable, outcomeUnavailable},
	"ServiceUnavailable":          {ierr.Unavailable, outcomeUnavailable},
	"ServiceUnavailableException": {ierr.Unavailable, outcomeUnavailable},
	"RequestTimeout":              {ierr.Unavailable, outcomeUnavailable},
	"RequestTimeoutException":     {ierr.Unavailable, outcomeUnavailable},
	// The photo itself can never succeed: dead-letter it.
	"InvalidImageFormatException": {ierr.Invalid, outcomeInvalid},
	"ImageTooLargeException":      {ierr.Invalid, outcomeInvalid},
	// Also a search's answer to a faceless image: search settles that case
	// with DetectFaces before an error reaches this table.
	codeInvalidParameter: {ierr.Invalid, outcomeInvalid},
	// The deployment is wrong: no photo can succeed until an operator acts.
	"AccessDeniedException":               {ierr.Misconfigured, outcomeMisconfigured},
	codeResourceNotFound:                  {ierr.Misconfigured, outcomeMisconfigured},
	"UnrecognizedClientException":         {ierr.Misconfigured, outcomeMisconfigured},
	"InvalidSignatureException":           {ierr.Misconfigured, outcomeMisconfigured},
	"IncompleteSignature":                 {ierr.Misconfigured, outcomeMisconfigured},
	"MissingAuthenticationTokenException": {ierr.Misconfigured, outcomeMisconfigured},
	"InvalidClientTokenId":                {ierr.Misconfigured, outcomeMisconfigured},
	"ExpiredTokenException":               {ierr.Misconfigured, outcomeMisconfigured},
	"ServiceQuotaExceededException":       {ierr.Misconfigured, outcomeMisconfigured}, // collection full
	"ValidationException":                 {ierr.Misconfigured, outcomeMisconfigured}, // e.g. a bad collection id
}

// isCode reports whether err carries the AWS error code code.
func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// classify translates an error from the Rekognition client into the kind the
// worker acts on and the outcome label of rekognition_calls_total.
//
//   - throttling, 5xx, network errors, time-outs → ierr.Unavailable (Nak with back-off);
//   - a bad image → ierr.Invalid (dead-letter);
//   - denied access, missing collection, bad credentials, any other client-side
//     error Rekognition reports → ierr.Misconfigured (retried with back-off and
//     alerted on; never blamed on the photo);
//   - anything else that is not an answer from the service (e.g. a response
//     that cannot be decoded) → ierr.Unavailable: redelivery is bounded by the
//     consumer's MaxDeliver, after which the message is dead-lettered anyway.
func classify(err error) (ierr.Kind, string) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if k, ok := errorCodeKinds[ae.ErrorCode()]; ok {
			return k.kind, k.outcome
		}
		if status := httpStatus(err); status >= 500 || ae.ErrorFault() == smithy.FaultServer {
			return ierr.Unavailable, outcomeUnavailable
		}
		return ierr.Misconfigured, outcomeMisconfigured
	}
	if status := httpStatus(err); status >= 500 {
		return ierr.Unavailable, outcomeUnavailable
	}
	var (
		invalidParams *smithy.InvalidParamsError
		missingRegion *aws.MissingRegionError
	)
	switch {
	case errors.As(err, &invalidParams):
		// The SDK refused our request before sending it: a bug here.
		return ierr.Internal, outcomeError
	case errors.As(err, &missingRegion):
		return ierr.Misconfigured, outcomeMisconfigured
	default:
		// Network errors, time-outs (context.DeadlineExceeded), cancellation,
		// undecodable responses: all worth another try later.
		return ierr.Unavailable, outcomeUnavailable
	}
}

// httpStatus returns the HTTP status of the response behind err, or 0.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
