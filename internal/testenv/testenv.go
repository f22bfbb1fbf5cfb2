// Package testenv holds the helpers that memo's own tests share: finding
// the test servers (Require), namespaces unique to a run (NS), and checks
// of what a backend holds (WantGet). It is internal: a
// third-party backend needs only backends/backendtest.
package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gomemo/memo"
)

var (
	runSeq atomic.Uint64
	seed   = rand.Uint32()
)

// NS returns a namespace unique to this process and call, so that runs
// sharing a server never see each other's keys. It is safe for concurrent
// use.
func NS(t testing.TB, name string) string {
	return fmt.Sprintf("test:%s.%x.%d.%d", name, seed, os.Getpid(), runSeq.Add(1))
}

// InCI reports whether the tests run in CI: the variable CI is set to
// anything but "", "0" or "false" (GitHub Actions and most CI systems set
// CI=true).
func InCI() bool {
	switch strings.ToLower(os.Getenv("CI")) {
	case "", "0", "false":
		return false
	}
	return true
}

// Require returns the address of a test server from the environment
// variable env (see scripts/servers.sh env). When env is unset it skips
// t, or, in CI ([InCI]), fails it: CI must run every backend.
func Require(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if InCI() {
			t.Fatalf("%s is not set: CI must start this server (see scripts/servers.sh)", env)
		}
		t.Skipf("%s is not set; run `make test` to start the test servers", env)
	}
	return v
}

// WantGet fails t unless b holds want under key; want "" means a miss.
func WantGet(t testing.TB, b memo.Backend, key, want string) {
	t.Helper()
	v, ok, err := b.Get(context.Background(), key)
	switch {
	case err != nil:
		t.Fatalf("Get(%q) error = %v, want nil", key, err)
	case want == "" && ok:
		t.Fatalf("Get(%q) = hit %.40q, want miss", key, v)
	case want == "" && v != nil:
		t.Fatalf("Get(%q) = %q, false; want nil on a miss", key, v)
	case want != "" && !ok:
		t.Fatalf("Get(%q) = miss, want %.40q", key, want)
	case want != "" && string(v) != want:
		t.Fatalf("Get(%q) = %.40q, want %.40q", key, v, want)
	}
}
