package services

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// RekognitionClient is the SDK client PhotoAnalyzerService calls. The name
// lets the worker hold one (a test's, pointed at the emulator) without
// importing the SDK.
type RekognitionClient = rekognition.Client

// SDK retry policy for Rekognition calls. The SDK retries throttling
// (ThrottlingException, ProvisionedThroughputExceededException, …), 5xx
// answers and connection errors in "standard" mode: exponential back-off with
// full jitter (base 1 s for throttling, 50 ms otherwise, capped at
// RetryMaxBackoff) and a client-wide retry quota that stops retrying during a
// sustained storm. Few attempts and a short cap on purpose: the SDK only
// absorbs blips inside one operation; a longer outage is the worker's to ride
// out by Nak-ing the message with a delay, which does not hold a worker slot.
// Adaptive mode is not used: its client-side rate limiter would make callers
// wait inside the SDK, beyond the per-call timeout's intent.
const (
	// RetryMaxAttempts is the number of attempts per operation, the first
	// included. AWS_MAX_ATTEMPTS (or max_attempts in the shared config file),
	// when set, overrides it in NewRekognitionClient.
	RetryMaxAttempts = 3
	// RetryMaxBackoff caps the delay before any retry.
	RetryMaxBackoff = 2 * time.Second
)

// NewRetryer returns the SDK retryer described by RetryMaxAttempts and
// RetryMaxBackoff. optFns adjust it after the defaults; tests use them to make
// the back-off short.
func NewRetryer(optFns ...func(*retry.StandardOptions)) aws.Retryer {
	return retry.NewStandard(append([]func(*retry.StandardOptions){func(o *retry.StandardOptions) {
		o.MaxAttempts = RetryMaxAttempts
		o.MaxBackoff = RetryMaxBackoff
	}}, optFns...)...)
}

// NewRekognitionClient builds a Rekognition client from the standard AWS
// configuration: the default credential chain (environment, shared config and
// credentials files and profiles, SSO, web identity, ECS and EC2 roles),
// AWS_REGION, and the standard endpoint override AWS_ENDPOINT_URL_REKOGNITION
// (or AWS_ENDPOINT_URL), which points it at a local emulator or test server.
// Retries follow NewRetryer. optFns are applied last (e.g. to set
// BaseEndpoint and static credentials for the local emulator).
//
// It fails, with an ierr.Misconfigured error, when no region is configured or
// no credentials can be retrieved, so a worker stops at start-up instead of
// failing every photo later.
func NewRekognitionClient(ctx context.Context, optFns ...func(*rekognition.Options)) (*rekognition.Client, error) {
	const op = "services.NewRekognitionClient"
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, ierr.E(ierr.Misconfigured, op, err)
	}
	// Set on the client rather than with awsconfig.WithRetryer, which would make
	// the SDK ignore AWS_MAX_ATTEMPTS; the client still applies
	// cfg.RetryMaxAttempts on top of this retryer. AWS_RETRY_MODE is ignored.
	withRetryer := func(o *rekognition.Options) { o.Retryer = NewRetryer() }
	client := rekognition.NewFromConfig(cfg, append([]func(*rekognition.Options){withRetryer}, optFns...)...)
	o := client.Options()
	if o.Region == "" {
		return nil, ierr.Errorf(ierr.Misconfigured, op, "no AWS region configured: set AWS_REGION")
	}
	if o.Credentials == nil {
		return nil, ierr.Errorf(ierr.Misconfigured, op, "no AWS credentials provider")
	}
	if _, err := o.Credentials.Retrieve(ctx); err != nil {
		return nil, ierr.E(ierr.Misconfigured, op, fmt.Errorf("no AWS credentials found by the default chain: %w", err))
	}
	return client, nil
}

// NewRekognitionClientFromConfig is NewRekognitionClient with what the
// worker's configuration sets on top of the standard AWS configuration:
// AWS_REGION, the endpoint override and complete static credentials. config
// reads those, so a caller's environment (the dev stack's overlay pointing
// at the emulator) reaches the client as it reaches the rest of the worker.
func NewRekognitionClientFromConfig(ctx context.Context, c config.Worker) (*rekognition.Client, error) {
	return NewRekognitionClient(ctx, func(o *rekognition.Options) {
		if c.AWSRegion != "" {
			o.Region = c.AWSRegion
		}
		if c.RekognitionEndpoint != "" {
			o.BaseEndpoint = aws.String(c.RekognitionEndpoint)
		}
		if cr := c.AWSCredentials; cr.Set() {
			o.Credentials = credentials.NewStaticCredentialsProvider(cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken)
		}
	})
}
