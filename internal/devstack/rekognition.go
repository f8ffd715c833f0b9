package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
)

// RekognitionDir is the folder under Config.Dir where the local face
// recognition service keeps its collections.
const RekognitionDir = "rekognition-local"

// rekognitionSetup is what the dev stack decided about face recognition.
type rekognitionSetup struct {
	env      map[string]string // worker variables to overlay
	describe string            // one line for the banner
	close    func() error
}

// startRekognition uses AWS when the environment configures it, and
// otherwise (no credentials anywhere) runs rekognitionlocal in-process: real
// face detection and recognition on this machine, behind the Rekognition
// API, its collection kept under dir so faces indexed in one run are
// recognised in the next and face ids in stored rows keep naming one face.
func startRekognition(getenv config.Getenv, dir string, log *slog.Logger) (rekognitionSetup, error) {
	noop := func() error { return nil }
	if awsConfigured(getenv) {
		coll := getenv("REKOGNITION_COLLECTION_ID")
		if coll == "" {
			return rekognitionSetup{close: noop,
				describe: "disabled: AWS is configured but REKOGNITION_COLLECTION_ID is empty"}, nil
		}
		return rekognitionSetup{close: noop,
			describe: "AWS Rekognition, collection " + coll + " (region " + getenv("AWS_REGION") + ")"}, nil
	}

	// Faces indexed by the byte-identity emulator earlier dev stacks ran are
	// not carried over: it kept hashes of photos, not face descriptors.
	if _, err := os.Stat(filepath.Join(dir, "rekognition")); err == nil {
		log.Info("the face collection of the former Rekognition emulator is no longer used; "+
			"known people are indexed afresh (make clean removes it)", "folder", filepath.Join(dir, "rekognition"))
	}

	data := filepath.Join(dir, RekognitionDir)
	t0 := time.Now()
	srv, err := rekognitionlocal.New(rekognitionlocal.Options{Dir: data, Log: log})
	if err != nil {
		return rekognitionSetup{}, fmt.Errorf("devstack: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rekognitionSetup{}, fmt.Errorf("devstack: local face recognition: %w", err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	log.Info("local face recognition started", "url", url, "data", data, "faces", srv.Faces(),
		"took", time.Since(t0).Round(time.Millisecond))

	// The worker finds the server through its configuration, as it would
	// find any endpoint override: config reads these variables from the
	// overlay, so nothing here touches the process environment the SDK
	// reads. The server checks no signature, but the SDK signs only with
	// some credentials.
	return rekognitionSetup{
		env: map[string]string{
			"REKOGNITION_COLLECTION_ID":    localCollection,
			"AWS_ENDPOINT_URL_REKOGNITION": url,
			"AWS_REGION":                   localRegion,
			"AWS_ACCESS_KEY_ID":            "devstack",
			"AWS_SECRET_ACCESS_KEY":        "devstack",
		},
		describe: "local face recognition (rekognition-local) at " + url + ", collection " + localCollection +
			", faces kept in " + data,
		close: func() error {
			cancel() // Serve lets requests in progress finish
			if err := <-done; err != nil {
				return fmt.Errorf("devstack: local face recognition: %w", err)
			}
			log.Info("local face recognition stopped")
			return nil
		},
	}, nil
}

// localCollection and localRegion are the face collection and the region
// the worker uses with the local service (the region only shows in ARNs).
const (
	localCollection = "devstack-faces"
	localRegion     = "us-east-1"
)

// awsConfigured reports whether the standard AWS chain could find
// credentials or an endpoint: environment credentials, a profile, web
// identity, a container role, an endpoint override or a shared config file
// (~/.aws, with HOME read from getenv like everything else, so a test's
// HOME hides the developer's own AWS files).
func awsConfigured(getenv config.Getenv) bool {
	for _, v := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_ENDPOINT_URL_REKOGNITION", "AWS_ENDPOINT_URL",
	} {
		if getenv(v) != "" {
			return true
		}
	}
	files := []string{getenv("AWS_SHARED_CREDENTIALS_FILE"), getenv("AWS_CONFIG_FILE")}
	if home := getenv("HOME"); home != "" {
		files = append(files, filepath.Join(home, ".aws", "credentials"), filepath.Join(home, ".aws", "config"))
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}
