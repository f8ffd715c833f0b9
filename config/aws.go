package config

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// The worker's Rekognition settings that are read here rather than left to
// the AWS SDK. The SDK reads the process environment itself; reading these
// through Getenv lets a caller's environment (the dev stack's overlay, a
// test's map) reach the client, and lets start-up name a wrong variable.
// Everything else (profiles, web identity, container and instance roles,
// shared files, AWS_MAX_ATTEMPTS) stays the SDK's standard chain.

// collectionIDPattern is Rekognition's rule for a collection id.
var collectionIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,255}$`)

// CheckCollectionID reports whether id is a valid Rekognition collection id.
// LoadWorker applies it to REKOGNITION_COLLECTION_ID; services applies it to
// configurations built by hand.
func CheckCollectionID(id string) error {
	if !collectionIDPattern.MatchString(id) {
		return fmt.Errorf("must be 1-255 characters of [a-zA-Z0-9_.-]")
	}
	return nil
}

// AWSCredentials are static AWS credentials. They are used only when both
// AccessKeyID and SecretAccessKey are set, exactly as the SDK treats the
// same variables; otherwise the standard chain finds credentials.
type AWSCredentials struct {
	AccessKeyID     string
	SecretAccessKey string // never logged
	SessionToken    string // never logged
}

// Set reports whether the credentials are complete enough to be used.
func (c AWSCredentials) Set() bool { return c.AccessKeyID != "" && c.SecretAccessKey != "" }

// String keeps the secret out of %v and %+v of a Worker.
func (c AWSCredentials) String() string {
	if !c.Set() {
		return "standard AWS chain"
	}
	return "static credentials"
}

// LogValue keeps the secret out of logs.
func (c AWSCredentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// collectionID reads a Rekognition collection id; "" (recognition disabled)
// is allowed.
func (e *env) collectionID(name string) string {
	v := e.str(name, "")
	if v == "" {
		return ""
	}
	if err := CheckCollectionID(v); err != nil {
		e.fail(name, "%v, got %q", err, v)
	}
	return v
}

// rekognitionEndpoint reads AWS_ENDPOINT_URL_REKOGNITION, the SDK's
// standard endpoint override, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
// tells the SDK to ignore it. AWS_ENDPOINT_URL, which applies to every
// service, is left to the SDK.
func (e *env) rekognitionEndpoint() string {
	if strings.EqualFold(e.str("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", ""), "true") {
		return ""
	}
	return e.httpURL("AWS_ENDPOINT_URL_REKOGNITION")
}

// awsCredentials reads the credentials variables verbatim (no trimming: the
// SDK does not trim them either).
func (e *env) awsCredentials() AWSCredentials {
	return AWSCredentials{
		AccessKeyID:     e.get("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: e.get("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    e.get("AWS_SESSION_TOKEN"),
	}
}
