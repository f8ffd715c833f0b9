// Package openapi holds the API's OpenAPI 3.1 document (openapi.json), written
// by hand and embedded in the binary. package handlers serves it at
// GET /openapi.json and behind the docs page; internal/openapitest validates
// the tests' real requests and responses against it, so it cannot drift from
// the code.
//
// It is a package of its own, not a file of package handlers, so that
// handlers' own tests can use internal/openapitest without an import cycle.
package openapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

//go:embed openapi.json
var document []byte

// JSON returns a copy of the document.
func JSON() []byte { return bytes.Clone(document) }

// Check parses the document far enough to fail fast at start-up when it is
// broken: valid JSON, OpenAPI 3.1, with paths. The full validation (schemas,
// references) is the tests' job, with a real OpenAPI library.
func Check() error {
	var d struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &d); err != nil {
		return fmt.Errorf("openapi.json: %w", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.1.") {
		return fmt.Errorf("openapi.json: openapi %q, want 3.1.x", d.OpenAPI)
	}
	if len(d.Paths) == 0 {
		return errors.New("openapi.json: no paths")
	}
	return nil
}
