package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/internal/clocktest"
)

// The freshness options of memo (issue 10) as the handler shows them:
// RFC 5861's stale-while-revalidate and stale-if-error, stale answers in
// Cache-Status, and remembered errors answered from the cache. Time is a
// clocktest.Clock that memo and the handler both read; no test waits for
// time to pass.

// freshTiers are the two places an entry can live: the local tier (a
// function without a backend) and a remote backend.
var freshTiers = []struct {
	name string
	opts func() []memo.Option
}{
	{"local", func() []memo.Option { return nil }},
	{"memory", func() []memo.Option { return []memo.Option{memo.WithBackend(memory.New())} }},
}

// freshFixture serves a memoized function at any path (the path is the
// argument) through a handler that reads the test's clock. fn's n-th call
// answers n unless behave says otherwise.
type freshFixture struct {
	clk   *clocktest.Clock
	f     *memo.Func[string, int64]
	h     http.Handler
	calls atomic.Int64

	mu      sync.Mutex
	behave  func(ctx context.Context, n int64) (int64, error) // guarded by mu; nil: answer n
	faults  []error                                           // OnError; guarded by mu
	logged  []error                                           // ErrorLog; guarded by mu
	blocked []chan struct{}                                   // closed at cleanup
}

var freshSeq atomic.Int64 // numbers the fixtures' namespaces

// withClock makes the handler read clk (memo reads it through
// clocktest.MemoOption).
func withClock(clk *clocktest.Clock) Option {
	return Option{func(c *config) { c.now = clk.Now }}
}

func newFreshFixture(t *testing.T, tier []memo.Option, opts []memo.Option, adapter ...Option) *freshFixture {
	t.Helper()
	fx := &freshFixture{clk: clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))}
	fn := func(ctx context.Context, id string) (int64, error) {
		n := fx.calls.Add(1)
		fx.mu.Lock()
		b := fx.behave
		fx.mu.Unlock()
		if b == nil {
			return n, nil
		}
		return b(ctx, n)
	}
	all := append([]memo.Option{
		// A namespace of its own: the local tier is shared by the process
		// and outlives the test (-count=N).
		memo.Namespace(fmt.Sprintf("test.%s.%d", strings.ReplaceAll(t.Name(), "/", "."), freshSeq.Add(1))),
		clocktest.MemoOption(fx.clk).(memo.Option),
		memo.OnError(func(_ context.Context, err error) { fx.mu.Lock(); fx.faults = append(fx.faults, err); fx.mu.Unlock() }),
	}, tier...)
	fx.f = memo.New(fn, append(all, opts...)...)
	adapter = append([]Option{
		withClock(fx.clk),
		ErrorLog(func(_ *http.Request, err error) { fx.mu.Lock(); fx.logged = append(fx.logged, err); fx.mu.Unlock() }),
	}, adapter...)
	fx.h = Handler(fx.f, func(r *http.Request) (string, error) { return strings.TrimPrefix(r.URL.Path, "/"), nil }, adapter...)
	t.Cleanup(func() {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		for _, c := range fx.blocked {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	})
	return fx
}

func (fx *freshFixture) setBehave(b func(ctx context.Context, n int64) (int64, error)) {
	fx.mu.Lock()
	fx.behave = b
	fx.mu.Unlock()
}

// serve sends a request for key; hdr holds header name/value pairs.
func (fx *freshFixture) serve(method, key string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/"+key, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	fx.h.ServeHTTP(rec, req)
	return rec
}

func (fx *freshFixture) get(key string, hdr ...string) *httptest.ResponseRecorder {
	return fx.serve("GET", key, hdr...)
}

// serveWithin serves a request on another goroutine and fails the test if
// it does not answer within a generous limit (as it would if it waited for
// an fn that the test holds).
func (fx *freshFixture) serveWithin(t *testing.T, what, key string) *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- fx.get(key) }()
	select {
	case rec := <-done:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer after 10 s: the handler waits for fn", what)
		return nil
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// limit: how these tests wait for a background refresh to land.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(limit) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// none stands for an absent header in the maps checkHeaders compares.
const none = "<none>"

// checkHeaders compares the given headers of rec (and its status and
// body, as "status" and "body") with want.
func checkHeaders(t *testing.T, what string, rec *httptest.ResponseRecorder, want map[string]string) {
	t.Helper()
	got := make(map[string]string, len(want))
	for k := range want {
		switch k {
		case "status":
			got[k] = fmt.Sprint(rec.Code)
		case "body":
			got[k] = rec.Body.String()
		default:
			v, ok := rec.Header()[http.CanonicalHeaderKey(k)]
			switch {
			case !ok:
				got[k] = none
			case len(v) == 1:
				got[k] = v[0]
			default:
				got[k] = strings.Join(v, " | ")
			}
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s: answer differs (-want +got):\n%s", what, d)
	}
}

// TestStaleDirectives: fresh answers carry stale-while-revalidate and
// stale-if-error from the function's options, in whole seconds rounded
// down, and none when the window is under a second or off; answers that
// bypass the cache, or that memo does not store, carry none.
func TestStaleDirectives(t *testing.T) {
	cases := []struct {
		name    string
		opts    []memo.Option
		adapter []Option
		dirs    string // what follows max-age
		cc      string // "private" unless Public
	}{
		{"off", nil, nil, "", "private"},
		{"swr", []memo.Option{memo.StaleWhileRevalidate(30 * time.Second)}, nil, ", stale-while-revalidate=30", "private"},
		{"sie", []memo.Option{memo.StaleIfError(10 * time.Minute)}, nil, ", stale-if-error=600", "private"},
		{"both rounded down", []memo.Option{memo.StaleWhileRevalidate(1500 * time.Millisecond), memo.StaleIfError(2*time.Minute + 999*time.Millisecond)}, nil,
			", stale-while-revalidate=1, stale-if-error=120", "private"},
		{"under a second", []memo.Option{memo.StaleWhileRevalidate(500 * time.Millisecond), memo.StaleIfError(999 * time.Millisecond)}, nil, "", "private"},
		{"public", []memo.Option{memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(10 * time.Minute)}, []Option{Public()},
			", stale-while-revalidate=30, stale-if-error=600", "public"},
	}
	for _, tier := range freshTiers {
		t.Run(tier.name+"/not stored", func(t *testing.T) {
			// ExpireFunc's 0: memo keeps nothing, so it has no stale
			// window to state.
			fx := newFreshFixture(t, tier.opts(), []memo.Option{
				memo.ExpireFunc(func(int64) time.Duration { return 0 }),
				memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(time.Minute),
			})
			checkHeaders(t, "not stored", fx.get("k"), map[string]string{
				"status": "200", "body": "1", "Age": none,
				"Cache-Control": "private, max-age=0", "Cache-Status": "memo; fwd=miss",
			})
		})
		for _, c := range cases {
			t.Run(tier.name+"/"+c.name, func(t *testing.T) {
				opts := append([]memo.Option{memo.Expire(time.Minute)}, c.opts...)
				fx := newFreshFixture(t, tier.opts(), opts, c.adapter...)
				checkHeaders(t, "miss", fx.get("k"), map[string]string{
					"status": "200", "body": "1", "Age": none,
					"Cache-Control": c.cc + ", max-age=60" + c.dirs,
					"Cache-Status":  "memo; fwd=miss; stored",
				})
				fx.clk.Advance(20500 * time.Millisecond)
				checkHeaders(t, "hit 20.5 s later", fx.get("k"), map[string]string{
					"status": "200", "body": "1", "Age": none, "X-Cache": "HIT",
					"Cache-Control": c.cc + ", max-age=39" + c.dirs, // 39.5 s left
					"Cache-Status":  "memo; hit; ttl=39",
				})
				checkHeaders(t, "no-store request", fx.get("k", "Cache-Control", "no-store"), map[string]string{
					"status": "200", "body": "2", "Cache-Control": "no-store", "Age": none,
				})
			})
		}
	}
}

// TestStaleAnswer: a stale answer says so (Cache-Status hit with a
// negative ttl, rounded down), has no Age and max-age=0, so that no cache
// takes it as fresh; each stale directive is the whole seconds left of its
// window, so that an RFC 5861 cache, which counts staleness from when it
// received the answer, may use it as long as memo would and no longer.
// Once the refresh lands, the answer is fresh again.
func TestStaleAnswer(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name+"/while revalidating", func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{
				memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(2 * time.Minute),
			})
			fx.get("k")
			fx.clk.Advance(70500 * time.Millisecond) // 10.5 s past expiry
			checkHeaders(t, "stale", fx.get("k"), map[string]string{
				"status": "200", "body": "1", "X-Cache": "HIT", "Age": none,
				"Cache-Status": "memo; hit; ttl=-11",
				// 19.5 s left of the 30 s window, 109.5 s of the 120 s one.
				"Cache-Control": "private, max-age=0, stale-while-revalidate=19, stale-if-error=109",
			})
			waitFor(t, "the refresh", func() bool {
				v, ok, err := fx.f.Peek(context.Background(), "k")
				return v == 2 && ok && err == nil
			})
			checkHeaders(t, "after the refresh", fx.get("k"), map[string]string{
				"status": "200", "body": "2", "X-Cache": "HIT", "Age": none,
				"Cache-Status":  "memo; hit; ttl=60",
				"Cache-Control": "private, max-age=60, stale-while-revalidate=30, stale-if-error=120",
			})
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
		})
		t.Run(tier.name+"/if error", func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{
				memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(2 * time.Minute),
			})
			etag := fx.get("k").Header().Get("Etag")
			errDown := errors.New("origin down")
			fx.setBehave(func(context.Context, int64) (int64, error) { return 0, errDown })
			fx.clk.Advance(100 * time.Second) // past the SWR window, within SIE's
			want := map[string]string{
				"status": "200", "body": "1", "X-Cache": "HIT", "Age": none,
				"Cache-Status":  "memo; hit; ttl=-40",
				"Cache-Control": "private, max-age=0, stale-if-error=80",
			}
			checkHeaders(t, "stale if error", fx.get("k"), want)
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
			// During the origin's backoff the stale answer comes without
			// calling fn, and a matching If-None-Match gets a 304 with the
			// same freshness headers.
			want["status"], want["body"], want["Etag"] = "304", "", etag
			checkHeaders(t, "304 during the backoff", fx.get("k", "If-None-Match", etag), want)
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2 (backoff)", n)
			}
			fx.mu.Lock()
			defer fx.mu.Unlock()
			if !slices.ContainsFunc(fx.faults, func(e error) bool { return errors.Is(e, errDown) }) {
				t.Errorf("OnError got %v, want fn's error", fx.faults)
			}
			if len(fx.logged) != 0 {
				t.Errorf("ErrorLog got %v, want nothing: the answer is a 200", fx.logged)
			}
		})
	}
}

// TestStaleWhileRevalidateAnswersAtOnce: a stale answer comes at once
// while fn is blocked on a channel the test holds, for the caller that
// starts the refresh and for one that comes while it runs; fn runs once,
// and once it returns the next answer is fresh.
func TestStaleWhileRevalidateAnswersAtOnce(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second)})
			fx.get("k")
			started, release := make(chan struct{}), make(chan struct{})
			fx.mu.Lock()
			fx.blocked = append(fx.blocked, release)
			fx.mu.Unlock()
			fx.setBehave(func(_ context.Context, n int64) (int64, error) {
				close(started)
				<-release
				return n, nil
			})
			fx.clk.Advance(70 * time.Second)
			want := map[string]string{
				"status": "200", "body": "1", "X-Cache": "HIT", "Age": none,
				"Cache-Status":  "memo; hit; ttl=-10",
				"Cache-Control": "private, max-age=0, stale-while-revalidate=20",
			}
			checkHeaders(t, "first stale caller", fx.serveWithin(t, "first stale caller", "k"), want)
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("the refresh did not start fn")
			}
			checkHeaders(t, "stale caller during the refresh", fx.serveWithin(t, "caller during the refresh", "k"), want)
			close(release)
			waitFor(t, "the refresh", func() bool {
				v, ok, err := fx.f.Peek(context.Background(), "k")
				return v == 2 && ok && err == nil
			})
			checkHeaders(t, "after the refresh", fx.get("k"), map[string]string{
				"status": "200", "body": "2", "X-Cache": "HIT", "Age": none,
				"Cache-Status":  "memo; hit; ttl=60",
				"Cache-Control": "private, max-age=60, stale-while-revalidate=30",
			})
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
		})
	}
}

// TestStaleRequestMaxAge: a request with max-age (and no max-stale) does
// not take a stale answer, however young, nor does one with min-fresh: it
// is recomputed. (The stale read has started a background refresh first:
// the recompute shares its run of fn or follows it.)
func TestStaleRequestMaxAge(t *testing.T) {
	for _, tier := range freshTiers {
		for _, cc := range []string{"max-age=600", "min-fresh=1"} {
			t.Run(tier.name+"/"+cc, func(t *testing.T) {
				fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second)})
				fx.get("k")
				fx.clk.Advance(70 * time.Second)
				r := fx.get("k", "Cache-Control", cc)
				n := fx.calls.Load()
				checkHeaders(t, cc+" on a stale entry", r, map[string]string{
					"status": "200", "body": fmt.Sprint(n), "X-Cache": "MISS", "Age": none,
					"Cache-Status":  "memo; fwd=request; stored",
					"Cache-Control": "private, max-age=60, stale-while-revalidate=30",
				})
				if n != 2 && n != 3 {
					t.Errorf("fn calls = %d, want 2 or 3", n)
				}
			})
		}
	}
}

// errNoUser is a not-found sentinel with no status of its own.
var errNoUser = errors.New("no such user")

// errNoOrder is a not-found sentinel that carries its status.
var errNoOrder = statusErr{404, "no such order"}

// userError is fn's own not-found error: it carries a status and matches
// errNoUser, but a remembered not-found keeps only the sentinel.
type userError struct{ id string }

func (e *userError) Error() string        { return "user " + e.id + " not found" }
func (e *userError) HTTPStatus() int      { return 404 }
func (e *userError) Is(target error) bool { return target == errNoUser }

// TestRememberedNotFound: a not-found that NegativeCache remembers is
// answered from the cache, without running fn, with the status the error
// mapping gives it (404 when none does), Cache-Status hit with its
// remaining ttl and a max-age of that remaining lifetime, and no Age,
// ETag or Last-Modified; conditional headers do not apply to it. The
// answer in which fn found nothing is today's error answer. Past the ttl
// fn runs again.
func TestRememberedNotFound(t *testing.T) {
	cases := []struct {
		name     string
		sentinel error
		fnErr    func(id string) error
		adapter  []Option
		first    int    // status of the answer in which fn ran
		firstMsg string // its body
	}{
		{"sentinel with a status", errNoOrder, func(id string) error { return fmt.Errorf("order %s: %w", id, errNoOrder) }, nil, 404, "Not Found\n"},
		{"ErrorStatus", errNoUser, func(id string) error { return fmt.Errorf("user %s: %w", id, errNoUser) },
			[]Option{ErrorStatus(func(err error) int {
				if errors.Is(err, errNoUser) {
					return 404
				}
				return 0
			})}, 404, "Not Found\n"},
		{"fn's error type", errNoUser, func(id string) error { return &userError{id} }, nil, 404, "Not Found\n"},
		{"no mapping", errNoUser, func(id string) error { return fmt.Errorf("user %s: %w", id, errNoUser) }, nil, 500, "Internal Server Error\n"},
		{"ErrorStatus 410", errNoUser, func(id string) error { return fmt.Errorf("user %s: %w", id, errNoUser) },
			[]Option{ErrorStatus(func(err error) int {
				if errors.Is(err, errNoUser) {
					return 410
				}
				return 0
			})}, 410, "Gone\n"},
	}
	for _, tier := range freshTiers {
		for _, c := range cases {
			t.Run(tier.name+"/"+c.name, func(t *testing.T) {
				fx := newFreshFixture(t, tier.opts(), []memo.Option{
					memo.Expire(time.Minute), memo.NegativeCache(30*time.Second, c.sentinel),
				}, c.adapter...)
				fx.setBehave(func(context.Context, int64) (int64, error) { return 0, c.fnErr("7") })
				checkHeaders(t, "fn finds nothing", fx.get("7"), map[string]string{
					"status": fmt.Sprint(c.first), "body": c.firstMsg,
					"Cache-Control": "no-store", "Cache-Status": none, "X-Cache": none, "Age": none,
				})
				status := "404"
				body := "Not Found\n"
				if c.first != 500 {
					status, body = fmt.Sprint(c.first), c.firstMsg
				}
				fx.clk.Advance(10500 * time.Millisecond)
				want := map[string]string{
					"status": status, "body": body, "X-Cache": "HIT",
					"Cache-Status":  "memo; hit; ttl=19", // 19.5 s left
					"Cache-Control": "private, max-age=19",
					"Vary":          "Authorization, Cookie",
					"Content-Type":  "text/plain; charset=utf-8",
					"Age":           none, "Etag": none, "Last-Modified": none,
				}
				checkHeaders(t, "remembered", fx.get("7"), want)
				checkHeaders(t, "remembered, If-None-Match: *", fx.get("7", "If-None-Match", "*"), want)
				delete(want, "body") // net/http drops a HEAD answer's body; a recorder keeps it
				checkHeaders(t, "remembered, HEAD", fx.serve("HEAD", "7"), want)
				if n := fx.calls.Load(); n != 1 {
					t.Errorf("fn calls = %d, want 1: a remembered not-found does not run fn", n)
				}
				fx.clk.Advance(20 * time.Second)
				checkHeaders(t, "past the ttl", fx.get("7"), map[string]string{
					"status": fmt.Sprint(c.first), "Cache-Control": "no-store", "Cache-Status": none,
				})
				if n := fx.calls.Load(); n != 2 {
					t.Errorf("fn calls = %d, want 2 past the ttl", n)
				}
				fx.mu.Lock()
				defer fx.mu.Unlock()
				if wantLogged := map[bool]int{true: 2}[c.first == 500]; len(fx.logged) != wantLogged {
					t.Errorf("ErrorLog calls = %d (%v), want %d: only fn's own 500s", len(fx.logged), fx.logged, wantLogged)
				}
			})
		}
	}
}

// TestRememberedNotFoundRequestDirectives: the request's max-age and
// min-fresh apply to a remembered not-found as to an answer: too old, fn
// runs.
func TestRememberedNotFoundRequestDirectives(t *testing.T) {
	for _, hdr := range [][]string{{"Cache-Control", "max-age=5"}, {"Cache-Control", "min-fresh=25"}, {"Cache-Control", "no-cache"}} {
		t.Run(strings.Join(hdr, ": "), func(t *testing.T) {
			fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute), memo.NegativeCache(30*time.Second, errNoOrder)})
			fx.setBehave(func(context.Context, int64) (int64, error) { return 0, errNoOrder })
			fx.get("7")
			fx.clk.Advance(10 * time.Second)
			checkHeaders(t, "recomputed", fx.get("7", hdr...), map[string]string{
				"status": "404", "Cache-Control": "no-store", "Cache-Status": none,
			})
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
		})
	}
}

// TestRememberedNotFoundNeverStale: once fn has found nothing, no request
// gets the stale body, whether the not-found came from a background
// refresh (StaleWhileRevalidate) or from a call that StaleIfError could
// have answered.
func TestRememberedNotFoundNeverStale(t *testing.T) {
	opts := []memo.Option{
		memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(2 * time.Minute),
		memo.NegativeCache(30*time.Second, errNoOrder),
	}
	notFound := func(context.Context, int64) (int64, error) { return 0, fmt.Errorf("order 7: %w", errNoOrder) }
	hit := map[string]string{
		"status": "404", "body": "Not Found\n", "X-Cache": "HIT",
		"Cache-Status": "memo; hit; ttl=30", "Cache-Control": "private, max-age=30", "Age": none, "Etag": none,
	}
	for _, tier := range freshTiers {
		t.Run(tier.name+"/found by the background refresh", func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), opts)
			etag := fx.get("7").Header().Get("Etag")
			fx.setBehave(notFound)
			fx.clk.Advance(70 * time.Second)
			// Until fn has run, the stale answer is all memo knows.
			if r := fx.get("7"); r.Code != 200 || r.Body.String() != "1" {
				t.Fatalf("stale call = %d %q, want 200 1", r.Code, r.Body)
			}
			waitFor(t, "the refresh to remember the not-found", func() bool {
				_, ok, err := fx.f.Peek(context.Background(), "7")
				return ok && errors.Is(err, errNoOrder)
			})
			checkHeaders(t, "after the refresh", fx.get("7"), hit)
			checkHeaders(t, "after the refresh, If-None-Match the stale ETag", fx.get("7", "If-None-Match", etag), hit)
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
		})
		t.Run(tier.name+"/within the StaleIfError window", func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), opts)
			fx.get("7")
			fx.setBehave(notFound)
			fx.clk.Advance(100 * time.Second) // past SWR, within SIE
			checkHeaders(t, "fn finds nothing", fx.get("7"), map[string]string{
				"status": "404", "body": "Not Found\n", "Cache-Control": "no-store", "Cache-Status": none,
			})
			checkHeaders(t, "remembered", fx.get("7"), hit)
			if n := fx.calls.Load(); n != 2 {
				t.Errorf("fn calls = %d, want 2", n)
			}
		})
	}
}

// TestRememberedError: an error that CacheErrors remembers is answered
// from the cache with its status (500 by default), Cache-Status hit and
// max-age its remaining lifetime; like any 5xx it goes to ErrorLog, as an
// error that matches memo.ErrCached.
func TestRememberedError(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Minute), memo.CacheErrors(10 * time.Second)}, Public())
			errDB := errors.New("db down")
			fx.setBehave(func(context.Context, int64) (int64, error) { return 0, errDB })
			checkHeaders(t, "fn fails", fx.get("k"), map[string]string{
				"status": "500", "body": "Internal Server Error\n", "Cache-Control": "no-store", "Cache-Status": none, "X-Cache": none,
			})
			fx.clk.Advance(4 * time.Second)
			checkHeaders(t, "remembered", fx.get("k"), map[string]string{
				"status": "500", "body": "Internal Server Error\n", "X-Cache": "HIT",
				"Cache-Status": "memo; hit; ttl=6", "Cache-Control": "public, max-age=6", "Age": none,
			})
			if n := fx.calls.Load(); n != 1 {
				t.Errorf("fn calls = %d, want 1", n)
			}
			fx.mu.Lock()
			defer fx.mu.Unlock()
			if len(fx.logged) != 2 || !errors.Is(fx.logged[0], errDB) || !errors.Is(fx.logged[1], memo.ErrCached) {
				t.Errorf("ErrorLog got %v, want fn's error, then a remembered one", fx.logged)
			}
		})
	}
}
