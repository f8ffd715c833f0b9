// Package e2e drives the whole system the way a phone and an operator do:
// HTTP requests into the real API, through a real embedded NATS JetStream,
// into the real worker, onto a real PostgreSQL, with Rekognition answered by
// the in-process emulator speaking its wire protocol to the real AWS SDK.
package e2e

// The tests are the package; see stack_test.go for the running system they share.
