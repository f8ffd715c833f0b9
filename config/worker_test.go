package config_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
)

func workerEnv(kv map[string]string) config.Getenv {
	return func(k string) string { return kv[k] }
}

func TestLoadWorkerDefaults(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	c, err := config.LoadWorker(workerEnv(map[string]string{
		"DATABASE_URL":   "postgres://app:pw@db:5432/telemetry",
		"ENCRYPTION_KEY": key,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAddr != ":8082" || c.NATSURL != config.DefaultNATSURL || c.BatchSize != 500 ||
		c.BatchLinger != 50*time.Millisecond || c.PhotoConcurrency != 4 || c.FaceMatchThreshold != 90 ||
		c.RekognitionCollectionID != "" || c.ShutdownTimeout != config.DefaultWorkerShutdownTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	if len(c.EncryptionKeys) != 1 || c.EncryptionKeys[0].ID() != crypto.DefaultKeyID {
		t.Fatalf("keys: %v", c.EncryptionKeys)
	}
	if fmt.Sprint(c.RetryBackoff) != "[1s 5s 15s 30s 1m0s 2m0s 5m0s]" {
		t.Fatalf("retry backoff: %v", c.RetryBackoff)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadWorkerValues(t *testing.T) {
	k1, _ := crypto.GenerateKey("k1")
	k2, _ := crypto.GenerateKey("k2")
	c, err := config.LoadWorker(workerEnv(map[string]string{
		"ADMIN_ADDR":                "127.0.0.1:9999",
		"NATS_URL":                  "nats://n1:4222,nats://n2:4222",
		"DATABASE_URL":              "host=db user=app dbname=telemetry",
		"ENCRYPTION_KEYS":           k2.Encode() + "," + k1.Encode(),
		"REKOGNITION_COLLECTION_ID": "fleet-faces",
		"FACE_MATCH_THRESHOLD":      "95.5",
		"AWS_REGION":                "us-east-1",
		"BATCH_SIZE":                "200",
		"BATCH_LINGER":              "10ms",
		"PHOTO_CONCURRENCY":         "8",
		"RETRY_BACKOFF":             "100ms, 2s",
		"LOG_LEVEL":                 "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.EncryptionKeys[0].ID() != "k2" || c.EncryptionKeys[1].ID() != "k1" || c.FaceMatchThreshold != 95.5 ||
		c.BatchSize != 200 || c.BatchLinger != 10*time.Millisecond || c.PhotoConcurrency != 8 ||
		fmt.Sprint(c.RetryBackoff) != "[100ms 2s]" || c.AWSRegion != "us-east-1" || c.RekognitionCollectionID != "fleet-faces" {
		t.Fatalf("values: %+v", c)
	}
}

func TestLoadWorkerErrors(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	base := map[string]string{"DATABASE_URL": "postgres://app:s3cret@db/telemetry", "ENCRYPTION_KEY": key}
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"no database", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL: is required"},
		{"bad database url", map[string]string{"DATABASE_URL": "postgres://app:s3cret@db:port/x"}, "DATABASE_URL: is not a valid"},
		{"no key", map[string]string{"ENCRYPTION_KEY": ""}, "ENCRYPTION_KEYS or ENCRYPTION_KEY is required"},
		{"short key", map[string]string{"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 16))}, "ENCRYPTION_KEY: must decode to 32 bytes"},
		{"bad key list", map[string]string{"ENCRYPTION_KEY": "", "ENCRYPTION_KEYS": "k1:" + key + ",k1:" + key}, "appears more than once"},
		{"threshold zero", map[string]string{"FACE_MATCH_THRESHOLD": "0"}, "FACE_MATCH_THRESHOLD"},
		{"threshold above 100", map[string]string{"FACE_MATCH_THRESHOLD": "101"}, "FACE_MATCH_THRESHOLD"},
		{"batch size zero", map[string]string{"BATCH_SIZE": "0"}, "BATCH_SIZE"},
		{"batch size above max ack pending", map[string]string{"BATCH_SIZE": "2000"}, "CONSUMER_MAX_ACK_PENDING"},
		{"linger not a duration", map[string]string{"BATCH_LINGER": "fast"}, "BATCH_LINGER"},
		{"photo concurrency", map[string]string{"PHOTO_CONCURRENCY": "-1"}, "PHOTO_CONCURRENCY"},
		{"retry backoff", map[string]string{"RETRY_BACKOFF": "1s,,2s"}, "RETRY_BACKOFF"},
		{"recognition timeout vs ack wait", map[string]string{"RECOGNITION_TIMEOUT": "20s"}, "CONSUMER_ACK_WAIT"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"admin addr", map[string]string{"ADMIN_ADDR": "8082"}, "ADMIN_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.set {
				env[k] = v
			}
			_, err := config.LoadWorker(workerEnv(env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), key) {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestWorkerValidateRefusesNoKeys(t *testing.T) {
	c, err := config.LoadWorker(workerEnv(map[string]string{
		"DATABASE_URL":   "postgres://db/x",
		"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}))
	if err != nil {
		t.Fatal(err)
	}
	c.EncryptionKeys = nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEYS") {
		t.Fatalf("Validate without keys: %v", err)
	}
}

func TestWorkerLogValueHidesSecrets(t *testing.T) {
	k, _ := crypto.GenerateKey("k1")
	c := config.Worker{DatabaseURL: "postgres://app:s3cret@db/x", EncryptionKeys: []crypto.Key{k}}
	out := c.LogValue().String()
	if strings.Contains(out, "s3cret") || strings.Contains(out, strings.TrimPrefix(k.Encode(), "k1:")) || !strings.Contains(out, "k1") {
		t.Fatalf("LogValue = %s", out)
	}
}

func TestLoadWorkerRekognitionCollectionID(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	env := map[string]string{"DATABASE_URL": "postgres://db/x", "ENCRYPTION_KEY": key}
	for _, id := range []string{"faces/prod", "faces prod", strings.Repeat("f", 256)} {
		env["REKOGNITION_COLLECTION_ID"] = id
		_, err := config.LoadWorker(workerEnv(env))
		if err == nil || !strings.Contains(err.Error(), "REKOGNITION_COLLECTION_ID: must be 1-255 characters") {
			t.Errorf("collection id %q: err = %v, want one naming REKOGNITION_COLLECTION_ID", id, err)
		}
	}
	// Reported along with the other wrong variables, not after them.
	env["REKOGNITION_COLLECTION_ID"] = "faces/prod"
	env["BATCH_SIZE"] = "0"
	if _, err := config.LoadWorker(workerEnv(env)); err == nil ||
		!strings.Contains(err.Error(), "REKOGNITION_COLLECTION_ID") || !strings.Contains(err.Error(), "BATCH_SIZE") {
		t.Errorf("err = %v, want both variables named", err)
	}
	delete(env, "BATCH_SIZE")

	env["REKOGNITION_COLLECTION_ID"] = "fleet-faces_v2.1"
	c, err := config.LoadWorker(workerEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	c.RekognitionCollectionID = "faces/prod"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "REKOGNITION_COLLECTION_ID") {
		t.Errorf("Validate of a hand-built bad collection id: %v", err)
	}
}

func TestLoadWorkerAWSSettings(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	base := map[string]string{"DATABASE_URL": "postgres://db/x", "ENCRYPTION_KEY": key}
	with := func(kv map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range kv {
			env[k] = v
		}
		return env
	}

	c, err := config.LoadWorker(workerEnv(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.RekognitionEndpoint != "" || c.AWSCredentials.Set() {
		t.Fatalf("nothing set: endpoint %q, credentials %v", c.RekognitionEndpoint, c.AWSCredentials)
	}

	c, err = config.LoadWorker(workerEnv(with(map[string]string{
		"AWS_ENDPOINT_URL_REKOGNITION": "http://127.0.0.1:4566",
		"AWS_ACCESS_KEY_ID":            "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY":        "s3cret-key",
		"AWS_SESSION_TOKEN":            "s3cret-token",
	})))
	if err != nil {
		t.Fatal(err)
	}
	if c.RekognitionEndpoint != "http://127.0.0.1:4566" || !c.AWSCredentials.Set() ||
		c.AWSCredentials.AccessKeyID != "AKIDEXAMPLE" || c.AWSCredentials.SecretAccessKey != "s3cret-key" || c.AWSCredentials.SessionToken != "s3cret-token" {
		t.Fatalf("values: endpoint %q, credentials %#v", c.RekognitionEndpoint, c.AWSCredentials)
	}
	for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), c.LogValue().String()} {
		if strings.Contains(out, "s3cret") {
			t.Fatalf("the configuration prints a secret: %s", out)
		}
	}

	// Half a key pair is left to the SDK's chain, as the SDK itself does.
	c, err = config.LoadWorker(workerEnv(with(map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"})))
	if err != nil || c.AWSCredentials.Set() {
		t.Fatalf("half a key pair: set=%v, err %v", c.AWSCredentials.Set(), err)
	}
	// The SDK would ignore the override; so does the configuration.
	c, err = config.LoadWorker(workerEnv(with(map[string]string{
		"AWS_ENDPOINT_URL_REKOGNITION": "http://127.0.0.1:4566", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
	})))
	if err != nil || c.RekognitionEndpoint != "" {
		t.Fatalf("ignored endpoint: %q, err %v", c.RekognitionEndpoint, err)
	}

	for _, bad := range []string{"127.0.0.1:4566", "ftp://host", "http://"} {
		_, err := config.LoadWorker(workerEnv(with(map[string]string{"AWS_ENDPOINT_URL_REKOGNITION": bad})))
		if err == nil || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL_REKOGNITION") {
			t.Errorf("endpoint %q: err = %v", bad, err)
		}
	}
}
