package services

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"
	"github.com/aws/smithy-go"

	"github.com/challenge-v3/challenge-v3/ierr"
)

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &smithy.OperationError{ServiceID: "Rekognition", OperationName: "SearchFacesByImage", Err: err}
	}
	tests := []struct {
		name    string
		err     error
		kind    ierr.Kind
		outcome string
	}{
		{"throttling", op(&types.ThrottlingException{Message: aws.String("Rate exceeded")}), ierr.Unavailable, outcomeThrottled},
		{"provisioned throughput", op(&types.ProvisionedThroughputExceededException{}), ierr.Unavailable, outcomeThrottled},
		{"internal server error", op(&types.InternalServerError{}), ierr.Unavailable, outcomeUnavailable},
		{"unmodelled 503", op(&smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}), ierr.Unavailable, outcomeUnavailable},
		{"unknown server fault", op(&smithy.GenericAPIError{Code: "Weird", Fault: smithy.FaultServer}), ierr.Unavailable, outcomeUnavailable},
		{"invalid image format", op(&types.InvalidImageFormatException{}), ierr.Invalid, outcomeInvalid},
		{"image too large", op(&types.ImageTooLargeException{}), ierr.Invalid, outcomeInvalid},
		{"invalid parameter", op(&types.InvalidParameterException{Message: aws.String("Minimum dimensions not met")}), ierr.Invalid, outcomeInvalid},
		{"access denied", op(&types.AccessDeniedException{}), ierr.Misconfigured, outcomeMisconfigured},
		{"resource not found", op(&types.ResourceNotFoundException{}), ierr.Misconfigured, outcomeMisconfigured},
		{"bad credentials", op(&smithy.GenericAPIError{Code: "UnrecognizedClientException"}), ierr.Misconfigured, outcomeMisconfigured},
		{"expired token", op(&smithy.GenericAPIError{Code: "ExpiredTokenException"}), ierr.Misconfigured, outcomeMisconfigured},
		{"unknown client fault", op(&smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultClient}), ierr.Misconfigured, outcomeMisconfigured},
		{"deadline", op(fmt.Errorf("send: %w", context.DeadlineExceeded)), ierr.Unavailable, outcomeUnavailable},
		{"canceled", op(&aws.RequestCanceledError{Err: context.Canceled}), ierr.Unavailable, outcomeUnavailable},
		{"connection refused", op(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), ierr.Unavailable, outcomeUnavailable},
		{"undecodable answer", op(&smithy.DeserializationError{Err: errors.New("unexpected EOF")}), ierr.Unavailable, outcomeUnavailable},
		{"missing region", op(&aws.MissingRegionError{}), ierr.Misconfigured, outcomeMisconfigured},
		{"client-side validation", op(&smithy.InvalidParamsError{Context: "SearchFacesByImageInput"}), ierr.Internal, outcomeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, outcome := classify(tt.err)
			if kind != tt.kind || outcome != tt.outcome {
				t.Fatalf("classify = %v, %q; want %v, %q", kind, outcome, tt.kind, tt.outcome)
			}
			if !slices.Contains(failureOutcomes, outcome) {
				t.Fatalf("outcome %q is not in failureOutcomes, so its series is not created at start-up", outcome)
			}
		})
	}
}
