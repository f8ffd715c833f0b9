package devstack

import (
	"context"
	"os"
	"path/filepath"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/worker"
)

// rekognitionSetup is what the dev stack decided about face recognition.
type rekognitionSetup struct {
	env        map[string]string // worker variables to overlay
	workerOpts worker.Options    // e.g. a Rekognition client pointed at the emulator
	describe   string            // one line for the banner
	close      func()
}

// startRekognition uses AWS when the environment configures it, and
// otherwise (no credentials anywhere) a local Rekognition emulator.
func startRekognition(ctx context.Context, getenv config.Getenv) (rekognitionSetup, error) {
	noop := func() {}
	if awsConfigured(getenv) {
		coll := getenv("REKOGNITION_COLLECTION_ID")
		if coll == "" {
			return rekognitionSetup{close: noop,
				describe: "disabled: AWS is configured but REKOGNITION_COLLECTION_ID is empty"}, nil
		}
		return rekognitionSetup{close: noop,
			describe: "AWS Rekognition, collection " + coll + " (region " + getenv("AWS_REGION") + ")"}, nil
	}

	// TODO(lead): wire the local emulator here: the integration point for
	// package rekognitionfake. Intended shape (worker.RunWith takes the
	// client, so no process environment has to change; the AWS SDK would not
	// see this package's env overlay anyway):
	//
	//	srv := rekognitionfake.New() // loopback HTTP server speaking Rekognition's JSON protocol
	//	client := rekognition.New(rekognition.Options{
	//		Region:       "us-east-1",
	//		BaseEndpoint: aws.String(srv.URL),
	//		Credentials:  credentials.NewStaticCredentialsProvider("devstack", "devstack", ""),
	//		Retryer:      services.NewRetryer(),
	//	})
	//	return rekognitionSetup{
	//		env:        map[string]string{"REKOGNITION_COLLECTION_ID": "devstack-faces"},
	//		workerOpts: worker.Options{Rekognition: client},
	//		describe:   "local emulator at " + srv.URL + ", collection devstack-faces",
	//		close:      srv.Close,
	//	}, nil
	//
	// (rekognitionfake.New starts an httptest server; the emulator keeps its
	// faces in memory, so faces indexed in one run are unknown in the next.)
	_ = ctx
	return rekognitionSetup{close: noop,
		describe: "disabled (no AWS configuration; the local emulator is not wired yet)"}, nil
}

// awsConfigured reports whether the standard AWS chain could find
// credentials or an endpoint: environment credentials, a profile, web
// identity, a container role, an endpoint override or a shared config file.
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
	if home, err := os.UserHomeDir(); err == nil {
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
