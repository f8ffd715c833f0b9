package devstack

import (
	"os"
	"path/filepath"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
)

// rekognitionSetup is what the dev stack decided about face recognition.
type rekognitionSetup struct {
	env      map[string]string // worker variables to overlay
	describe string            // one line for the banner
	close    func()
}

// startRekognition uses AWS when the environment configures it, and
// otherwise (no credentials anywhere) a local Rekognition emulator whose
// collection is kept under dir, so faces indexed in one run are recognised
// in the next and face ids in stored rows keep naming one face.
func startRekognition(getenv config.Getenv, dir string) (rekognitionSetup, error) {
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

	// No AWS configuration: a local emulator that speaks Rekognition's wire
	// protocol, reached through the same SDK client code as AWS. The worker
	// finds it through its configuration, as it would find any endpoint
	// override: config reads these variables from the overlay, so nothing
	// here touches the process environment the SDK reads. The emulator
	// accepts any signature, but the SDK signs only with some credentials.
	srv, err := rekognitionfake.Open(filepath.Join(dir, "rekognition", "collections.json"))
	if err != nil {
		return rekognitionSetup{}, err
	}
	return rekognitionSetup{
		env: map[string]string{
			"REKOGNITION_COLLECTION_ID":    emulatorCollection,
			"AWS_ENDPOINT_URL_REKOGNITION": srv.URL,
			"AWS_REGION":                   rekognitionfake.Region,
			"AWS_ACCESS_KEY_ID":            "devstack",
			"AWS_SECRET_ACCESS_KEY":        "devstack",
		},
		describe: "local emulator at " + srv.URL + ", collection " + emulatorCollection +
			" (not real face recognition: identical photos match, every other JPEG/PNG is a new face)",
		close: srv.Close,
	}, nil
}

// emulatorCollection is the face collection the dev stack's emulator uses.
const emulatorCollection = "devstack-faces"

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
