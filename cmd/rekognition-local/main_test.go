package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-h"}, exitOK, "-addr"},
		{[]string{"-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"serve"}, exitUsage, `unexpected argument "serve"`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.stderr)
		}
	}
}

func TestFailsOnAnUnusableAddress(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-addr", "127.0.0.1:-1", "-data", t.TempDir()}, &stdout, &stderr); code != exitFail {
		t.Errorf("exit %d, want %d; stdout %s", code, exitFail, stdout.String())
	}
	if !strings.Contains(stdout.String(), "rekognition-local failed") {
		t.Errorf("the failure is not logged: %q", stdout.String())
	}
}
