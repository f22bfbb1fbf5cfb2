package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// failingDelete is a store whose Delete fails with a secret in its text.
type failingDelete struct{ *memory.Backend }

func (failingDelete) Delete(context.Context, string) error {
	return errors.New("redis: AUTH s3cret refused")
}

// forgetServer serves a counter at GET /v/{id} and ForgetHandler at
// DELETE and POST /v/{id} (and at /any/{id} for every method), allowed
// when the request has "X-Admin: yes".
func forgetServer(t *testing.T, store memo.Backend, opts ...Option) (*httptest.Server, *errLog) {
	t.Helper()
	var calls atomic.Int64
	f := memo.New(func(ctx context.Context, id string) (string, error) {
		return id + "#" + strconv.FormatInt(calls.Add(1), 10), nil
	}, memo.Namespace("test."+t.Name()), memo.WithBackend(store), memo.Expire(time.Minute))
	log := &errLog{}
	opts = append(opts, log.option())
	admin := func(r *http.Request) bool { return r.Header.Get("X-Admin") == "yes" }
	forget := ForgetHandler(f, PathString("id"), admin, opts...)
	mux := http.NewServeMux()
	mux.Handle("GET /v/{id}", Handler(f, PathString("id")))
	mux.Handle("DELETE /v/{id}", forget)
	mux.Handle("POST /v/{id}", forget)
	mux.Handle("/any/{id}", forget)
	mux.Handle("DELETE /wrong/{other}", forget)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, log
}

func TestForgetHandler(t *testing.T) {
	srv, log := forgetServer(t, memory.New())
	c := srv.Client()
	steps := []struct {
		method, path string
		admin        bool
		status       int
		body         string // for GET, and for errors
		allow        string
	}{
		{"GET", "/v/a", false, 200, `"a#1"`, ""},
		{"GET", "/v/a", false, 200, `"a#1"`, ""},
		{"DELETE", "/v/a", false, 403, "Forbidden\n", ""},
		{"GET", "/v/a", false, 200, `"a#1"`, ""}, // refused: still cached
		{"DELETE", "/v/a", true, 204, "", ""},
		{"GET", "/v/a", false, 200, `"a#2"`, ""}, // forgotten: recomputed
		{"GET", "/v/b", false, 200, `"b#3"`, ""},
		{"POST", "/v/a", true, 204, "", ""},
		{"GET", "/v/a", false, 200, `"a#4"`, ""},
		{"GET", "/v/b", false, 200, `"b#3"`, ""}, // another entry: untouched
		{"DELETE", "/v/never", true, 204, "", ""},
		{"PUT", "/any/a", true, 405, "Method Not Allowed\n", "DELETE, POST"},
		{"GET", "/any/a", false, 405, "Method Not Allowed\n", "DELETE, POST"},
		{"DELETE", "/any/a", true, 204, "", ""},
		{"GET", "/v/a", false, 200, `"a#5"`, ""},
		{"DELETE", "/wrong/a", false, 403, "Forbidden\n", ""},            // refused before decode
		{"DELETE", "/wrong/a", true, 500, "Internal Server Error\n", ""}, // RouteError
	}
	for i, s := range steps {
		var hdr []string
		if s.admin {
			hdr = []string{"X-Admin", "yes"}
		}
		r := doReq(t, c, s.method, srv.URL+s.path, hdr...)
		if r.status != s.status || r.body != s.body {
			t.Errorf("step %d: %s %s = %d %q, want %d %q", i, s.method, s.path, r.status, r.body, s.status, s.body)
		}
		if s.method != "GET" || s.status != 200 {
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("step %d: %s %s: Cache-Control = %q, want no-store", i, s.method, s.path, cc)
			}
		}
		if got := r.header.Get("Allow"); got != s.allow {
			t.Errorf("step %d: %s %s: Allow = %q, want %q", i, s.method, s.path, got, s.allow)
		}
	}
	var re *RouteError
	if errs := log.take(); len(errs) != 1 || !errors.As(errs[0], &re) {
		t.Errorf("ErrorLog got %v, want one *RouteError (and nothing for 403, 405)", errs)
	}
}

// TestForgetHandlerErrors: a failing Forget is a 500 that never shows the
// error's text and is logged; ErrorBody applies to the handler's answers.
func TestForgetHandlerErrors(t *testing.T) {
	srv, log := forgetServer(t, failingDelete{memory.New()})
	r := doReq(t, srv.Client(), "DELETE", srv.URL+"/v/a", "X-Admin", "yes")
	if r.status != 500 || r.body != "Internal Server Error\n" || strings.Contains(r.body, "s3cret") {
		t.Errorf("DELETE with a failing store = %d %q, want 500 \"Internal Server Error\\n\"", r.status, r.body)
	}
	if errs := log.take(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "s3cret") {
		t.Errorf("ErrorLog got %v, want the store's error", errs)
	}

	srv, _ = forgetServer(t, memory.New(), ErrorBody(JSONError))
	for _, c := range []struct {
		method string
		admin  string
		status int
		body   string
	}{
		{"DELETE", "no", 403, `{"detail":"Forbidden"}` + "\n"},
		{"PATCH", "yes", 405, `{"detail":"Method Not Allowed"}` + "\n"},
	} {
		r := doReq(t, srv.Client(), c.method, srv.URL+"/any/a", "X-Admin", c.admin)
		if r.status != c.status || r.body != c.body || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s (X-Admin: %s) with JSONError = %d %q %q, want %d %q application/json", c.method, c.admin, r.status, r.body, r.header.Get("Content-Type"), c.status, c.body)
		}
	}
}

func TestForgetHandlerPanics(t *testing.T) {
	f := memo.New(func(ctx context.Context, id string) (string, error) { return id, nil }, memo.Namespace("test.forget.panics"))
	yes := func(*http.Request) bool { return true }
	for name, fn := range map[string]func(){
		"nil f":      func() { ForgetHandler[string, string](nil, PathString("id"), yes) },
		"nil decode": func() { ForgetHandler(f, nil, yes) },
		"nil allow":  func() { ForgetHandler(f, PathString("id"), nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if s, _ := recover().(string); !strings.HasPrefix(s, "httpadapter: ForgetHandler") {
					t.Errorf("panic = %q, want an httpadapter: ForgetHandler message", s)
				}
			}()
			fn()
		})
	}
}

// A DELETE on the endpoint's route forgets the entry of its argument.
func ExampleForgetHandler() {
	var n atomic.Int64
	users := memo.New(func(ctx context.Context, id int64) (string, error) {
		return fmt.Sprintf("user %d, version %d", id, n.Add(1)), nil
	}, memo.Namespace("example.forget"), memo.WithBackend(memory.New()), memo.Expire(time.Hour))
	isAdmin := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer admin-token" }
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", Handler(users, PathInt64("id")))
	mux.Handle("DELETE /users/{id}", ForgetHandler(users, PathInt64("id"), isAdmin))

	do := func(method, auth string) {
		req := httptest.NewRequest(method, "/users/7", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(strings.TrimSpace(fmt.Sprint(method, " ", rec.Code, " ", rec.Body.String())))
	}
	do("GET", "")
	do("DELETE", "Bearer guess")
	do("DELETE", "Bearer admin-token")
	do("GET", "")
	// Output:
	// GET 200 "user 7, version 1"
	// DELETE 403 Forbidden
	// DELETE 204
	// GET 200 "user 7, version 2"
}
