// Package e2e drives the whole system the way a phone and an operator do:
// HTTP requests into the real API, through a real embedded NATS JetStream,
// into the real worker, onto a real PostgreSQL, with Rekognition answered
// over its wire protocol to the real AWS SDK: by the byte-identity emulator
// (internal/rekognitionfake) where a test drives faults, and by the local
// face-recognition server (rekognitionlocal) where real faces matter.
package e2e

// The tests are the package; see stack_test.go for the running system they share.
