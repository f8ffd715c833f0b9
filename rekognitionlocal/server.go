// Package rekognitionlocal is a local face-recognition service speaking the
// AWS Rekognition API, for running the photo path without an AWS account.
// Faces are really detected and recognised (package facerec, pure Go), and
// collections persist in a data folder.
//
// It speaks Rekognition's wire protocol (awsJson1_1: POST /, header
// X-Amz-Target: RekognitionService.<Operation>, JSON bodies with base64 image
// bytes, errors as a 400/500 with __type, X-Amzn-ErrorType and message), so
// the official SDK client talks to it unchanged when its endpoint is
// overridden (AWS_ENDPOINT_URL_REKOGNITION, or BaseEndpoint). Requests must
// carry a SigV4 Authorization header, whose signature is not checked.
//
// Operations: CreateCollection, DescribeCollection, ListCollections,
// DeleteCollection, IndexFaces, SearchFacesByImage, ListFaces, DeleteFaces
// and DetectFaces; any other answers UnknownOperationException. What each
// answers, and where it differs from AWS, is in docs/rekognition.md.
package rekognitionlocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// FaceModelVersion is the face model version the server reports: the
// package the models come from.
const FaceModelVersion = "face-api-1.7.15"

// AccountID appears in the collection ARNs.
const AccountID = rekognitionwire.AccountID

// Options configure a Server.
type Options struct {
	// Dir is the folder where collections persist (StateFile in it); it is
	// created if missing. Required.
	Dir string
	// Engine recognises faces; nil loads facerec's embedded models.
	Engine *facerec.Engine
	// Concurrency is how many images are analysed at once (default: the
	// number of CPUs; each analysis also uses every CPU). Others queue.
	Concurrency int
	// Log receives start-up lines and internal errors; nil discards them.
	Log *slog.Logger
}

// Server holds the collections and answers the Rekognition operations. It
// is safe for concurrent use.
type Server struct {
	engine *facerec.Engine
	path   string
	slots  chan struct{}
	log    *slog.Logger
	now    func() time.Time
	ops    map[string]operation
	recent analysisCache

	mu          sync.Mutex // guards collections and writes of the state file
	collections rekognitionwire.Collections[face]
}

// New loads the collections from opts.Dir and returns a Server serving
// them.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("rekognitionlocal: no data folder")
	}
	if opts.Concurrency < 0 {
		return nil, fmt.Errorf("rekognitionlocal: concurrency %d", opts.Concurrency)
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Engine == nil {
		e, err := facerec.New(facerec.Options{})
		if err != nil {
			return nil, fmt.Errorf("rekognitionlocal: %w", err)
		}
		opts.Engine = e
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("rekognitionlocal: data folder: %w", err)
	}
	path := filepath.Join(opts.Dir, StateFile)
	collections, err := loadState(path)
	if err != nil {
		return nil, fmt.Errorf("rekognitionlocal: %s: %w (move it away to start with no collections)", path, err)
	}
	// Written once now, so an unwritable folder fails here rather than on
	// the first IndexFaces.
	if err := saveState(path, collections); err != nil {
		return nil, fmt.Errorf("rekognitionlocal: %w", err)
	}
	s := &Server{
		engine:      opts.Engine,
		path:        path,
		slots:       make(chan struct{}, opts.Concurrency),
		log:         opts.Log,
		now:         time.Now,
		collections: collections,
	}
	s.ops = map[string]operation{
		"CreateCollection":   s.createCollection,
		"DescribeCollection": s.describeCollection,
		"ListCollections":    s.listCollections,
		"DeleteCollection":   s.deleteCollection,
		"IndexFaces":         s.indexFaces,
		"SearchFacesByImage": s.searchFacesByImage,
		"ListFaces":          s.listFaces,
		"DeleteFaces":        s.deleteFaces,
		"DetectFaces":        s.detectFaces,
	}
	return s, nil
}

// Faces is the number of faces in all collections.
func (s *Server) Faces() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.collections {
		n += len(c.Faces)
	}
	return n
}

// change applies fn to the collections under the lock and saves them; when
// the save fails, undo reverts fn's change and the answer is
// InternalServerError, which the SDK retries.
func (s *Server) change(fn func() (undo func(), aerr *apiError)) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	undo, aerr := fn()
	if aerr != nil {
		return aerr
	}
	if err := saveState(s.path, s.collections); err != nil {
		undo()
		return errorf("InternalServerError", "collections not saved: %v", err)
	}
	return nil
}

// Serve answers on ln until ctx is cancelled, then stops accepting and
// lets requests in progress finish (at most 10 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// An image may wait for an analysis slot behind others.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Config is what cmd/rekognition-local takes from its flags.
type Config struct {
	Addr string // listen address, e.g. 127.0.0.1:4566
	Dir  string // data folder
}

// Run serves cfg until ctx is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(Options{Dir: cfg.Dir, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("rekognitionlocal: %w", err)
	}
	log.Info("rekognition-local listening", "addr", ln.Addr().String(), "data", cfg.Dir, "faces", s.Faces(),
		"endpoint", "AWS_ENDPOINT_URL_REKOGNITION=http://"+ln.Addr().String())
	if err := s.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("rekognition-local stopped")
	return nil
}
