package memo_test

import (
	"testing"

	"github.com/gomemo/memo/backends/backendtest"
)

// TestFreshnessLocalTier runs the freshness conformance cases on functions
// without a backend: the process's local tier, each case in namespaces of
// its own.
func TestFreshnessLocalTier(t *testing.T) {
	backendtest.RunFreshness(t, nil, backendtest.Options{})
}
