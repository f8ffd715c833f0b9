package facerec

import (
	"sync"
	"testing"
)

var (
	engineOnce sync.Once
	engine     *Engine
	engineErr  error
)

// testEngine returns the package's shared engine (loading the models takes
// about 0.1 s).
func testEngine(tb testing.TB) *Engine {
	tb.Helper()
	engineOnce.Do(func() { engine, engineErr = New(Options{}) })
	if engineErr != nil {
		tb.Fatal(engineErr)
	}
	return engine
}
