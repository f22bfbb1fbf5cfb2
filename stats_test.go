package memo_test

import (
	"testing"

	"github.com/gomemo/memo/backends/backendtest"
)

// TestStatsLocalTier runs the Stats and Observer cases on functions
// without a backend: the process's local tier.
func TestStatsLocalTier(t *testing.T) {
	backendtest.RunStats(t, nil, backendtest.Options{})
}
