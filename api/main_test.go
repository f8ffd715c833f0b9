package api

import (
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// The stream's tests use PostgreSQL; Main stops the cluster after.
func TestMain(m *testing.M) { testenv.Main(m) }
