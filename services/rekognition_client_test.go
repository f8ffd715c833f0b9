package services

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/rekognition"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
)

// isolateAWSEnv clears the AWS configuration a developer's machine may have,
// so the default chain sees only what the test sets.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":                        filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE":            filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":              "true",
		"AWS_PROFILE":                            "",
		"AWS_DEFAULT_PROFILE":                    "",
		"AWS_REGION":                             "",
		"AWS_DEFAULT_REGION":                     "",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_SESSION_TOKEN":                      "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_ROLE_ARN":                           "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_ENDPOINT_URL":                       "",
		"AWS_ENDPOINT_URL_REKOGNITION":           "",
		"AWS_MAX_ATTEMPTS":                       "",
		"AWS_RETRY_MODE":                         "",
	} {
		t.Setenv(k, v)
	}
}

func TestNewRekognitionClientFromEnvironment(t *testing.T) {
	isolateAWSEnv(t)
	fake := rekognitionfake.New()
	t.Cleanup(fake.Close)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_ENDPOINT_URL_REKOGNITION", fake.URL)

	ctx := context.Background()
	client, err := NewRekognitionClient(ctx)
	if err != nil {
		t.Fatalf("NewRekognitionClient: %v", err)
	}
	if got := client.Options().Retryer.MaxAttempts(); got != RetryMaxAttempts {
		t.Errorf("max attempts = %d, want %d", got, RetryMaxAttempts)
	}

	s, err := NewPhotoAnalyzerService(client, PhotoAnalyzerConfig{CollectionID: "env-faces"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx); err != nil {
		t.Fatalf("EnsureCollection through AWS_ENDPOINT_URL_REKOGNITION: %v", err)
	}
	if got := fake.Collections(); len(got) != 1 || got[0] != "env-faces" {
		t.Fatalf("the emulator's collections = %v; the endpoint override was not honoured", got)
	}
}

func TestNewRekognitionClientMaxAttemptsOverride(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_MAX_ATTEMPTS", "5")

	client, err := NewRekognitionClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := client.Options().Retryer.MaxAttempts(); got != 5 {
		t.Fatalf("max attempts = %d, want AWS_MAX_ATTEMPTS=5", got)
	}
}

func TestNewRekognitionClientMisconfigured(t *testing.T) {
	t.Run("no region", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		if _, err := NewRekognitionClient(context.Background()); !ierr.Is(err, ierr.Misconfigured) {
			t.Fatalf("err = %v, want misconfigured", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_REGION", "us-east-1")
		if _, err := NewRekognitionClient(context.Background()); !ierr.Is(err, ierr.Misconfigured) {
			t.Fatalf("err = %v, want misconfigured", err)
		}
	})
	t.Run("options applied last", func(t *testing.T) {
		isolateAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
		client, err := NewRekognitionClient(context.Background(), func(o *rekognition.Options) { o.Region = "us-west-2" })
		if err != nil {
			t.Fatalf("region given as an option: %v", err)
		}
		if got := client.Options().Region; got != "us-west-2" {
			t.Fatalf("region = %q", got)
		}
	})
}

// The dev stack's path: nothing in the process environment, everything in
// the worker's configuration (read from the dev stack's overlay).
func TestNewRekognitionClientFromConfig(t *testing.T) {
	isolateAWSEnv(t)
	fake := rekognitionfake.New()
	t.Cleanup(fake.Close)
	ctx := context.Background()

	if _, err := NewRekognitionClientFromConfig(ctx, config.Worker{AWSRegion: "eu-west-1", RekognitionEndpoint: fake.URL}); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("no credentials anywhere: err = %v, want misconfigured", err)
	}

	client, err := NewRekognitionClientFromConfig(ctx, config.Worker{
		AWSRegion:           "eu-west-1",
		RekognitionEndpoint: fake.URL,
		AWSCredentials:      config.AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret"},
	})
	if err != nil {
		t.Fatalf("NewRekognitionClientFromConfig: %v", err)
	}
	if got := client.Options().Region; got != "eu-west-1" {
		t.Errorf("region = %q", got)
	}
	s, err := NewPhotoAnalyzerService(client, PhotoAnalyzerConfig{CollectionID: "config-faces"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx); err != nil {
		t.Fatalf("EnsureCollection through the configured endpoint: %v", err)
	}
	if got := fake.Collections(); len(got) != 1 || got[0] != "config-faces" {
		t.Fatalf("the emulator's collections = %v; the configured endpoint was not used", got)
	}
}
