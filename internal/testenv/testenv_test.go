package testenv

import (
	"testing"
)

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"", false}, {"0", false}, {"false", false}, {"FALSE", false}, {"true", true}, {"1", true}, {"yes", true}} {
		t.Setenv("CI", tc.v)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// recorder is a testing.TB that records how Require ended the test.
type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) }
func (r *recorder) Skipf(string, ...any)  { r.skipped = true; panic(r) }

func require(env string) (r *recorder, v string) {
	r = &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	return r, Require(r, env)
}

// TestRequire: an unset server fails the test in CI and skips it outside.
func TestRequire(t *testing.T) {
	const env = "MEMO_TESTENV_ABSENT"
	t.Setenv(env, "")
	t.Setenv("CI", "true")
	if r, _ := require(env); !r.failed || r.skipped {
		t.Errorf("CI=true, %s unset: failed %v, skipped %v; want a failure", env, r.failed, r.skipped)
	}
	t.Setenv("CI", "")
	if r, _ := require(env); r.failed || !r.skipped {
		t.Errorf("CI unset, %s unset: failed %v, skipped %v; want a skip", env, r.failed, r.skipped)
	}
	t.Setenv(env, "127.0.0.1:1")
	t.Setenv("CI", "true")
	if r, v := require(env); r.failed || r.skipped || v != "127.0.0.1:1" {
		t.Errorf("%s set: %q, failed %v, skipped %v", env, v, r.failed, r.skipped)
	}
}
