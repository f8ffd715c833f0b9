package rekognitionlocal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/smithy-go"

	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
)

var (
	engineOnce sync.Once
	engine     *facerec.Engine
	engineErr  error
)

// sharedEngine is one engine for the package's servers (the models take a
// moment to load, longer under -race).
func sharedEngine(t testing.TB) *facerec.Engine {
	t.Helper()
	engineOnce.Do(func() { engine, engineErr = facerec.New(facerec.Options{}) })
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return engine
}

// server is a rekognitionlocal.Server on a loopback port, with its data
// folder.
type server struct {
	*rekognitionlocal.Server
	url, dir string
}

// start serves dir ("" for a fresh temporary folder).
func start(t testing.TB, dir string) *server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := rekognitionlocal.New(rekognitionlocal.Options{Dir: dir, Engine: sharedEngine(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &server{Server: s, url: ts.URL, dir: dir}
}

// startWithCollection starts a server with the empty collection "drivers"
// and returns an SDK client for it, and the collection id.
func startWithCollection(t *testing.T) (*server, *rekognition.Client, *string) {
	t.Helper()
	srv := start(t, "")
	c := sdkClient(srv.url)
	col := aws.String("drivers")
	if _, err := c.CreateCollection(context.Background(), &rekognition.CreateCollectionInput{CollectionId: col}); err != nil {
		t.Fatal(err)
	}
	return srv, c, col
}

// sdkClient is the real AWS SDK client without retries, so every call is
// one request and errors arrive as the server sent them.
func sdkClient(url string) *rekognition.Client {
	return rekognition.NewFromConfig(aws.Config{
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	}, func(o *rekognition.Options) { o.BaseEndpoint = aws.String(url) })
}

// apiCode is the Rekognition error code of err, "" for none.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func apiMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}

// post sends one raw awsJson1_1 request; auth "" sends none.
func post(t *testing.T, url, target, auth string, body []byte) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp, out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
