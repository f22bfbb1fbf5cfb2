package httpadapter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// Issue 13, who the answer depends on and what clients may force:
// IgnoreCredentials, the default bypass of credentialed requests (now
// collapsed per caller), IgnoreRequestDirectives, and one run of fn for
// concurrent requests that recompute, no-store ones included.

// burst serves n concurrent GETs of /k through a handler built by mk
// inside a synctest bubble: fn blocks until every request is waiting (for
// fn or for a run of it), then answers 42. hdr gives request i's header
// pairs. It returns the answers and how many times fn ran.
func burst(t *testing.T, n int, memoOpts []memo.Option, adapter []Option, hdr func(i int) []string) ([]*httptest.ResponseRecorder, int64) {
	t.Helper()
	var recs []*httptest.ResponseRecorder
	var calls atomic.Int64
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		f := memo.New(func(ctx context.Context, id string) (int64, error) {
			calls.Add(1)
			<-gate
			return 42, nil
		}, append([]memo.Option{memo.Namespace("test.burst." + strings.ReplaceAll(t.Name(), "/", ".")),
			memo.WithBackend(memory.New()), memo.Expire(time.Minute)}, memoOpts...)...)
		h := Handler(f, func(r *http.Request) (string, error) { return strings.TrimPrefix(r.URL.Path, "/"), nil }, adapter...)
		recs = make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				req := httptest.NewRequest("GET", "/k", nil)
				p := hdr(i)
				for j := 0; j+1 < len(p); j += 2 {
					req.Header.Add(p[j], p[j+1])
				}
				recs[i] = httptest.NewRecorder()
				h.ServeHTTP(recs[i], req)
			})
		}
		synctest.Wait() // every request waits on fn or on its flight
		close(gate)
		wg.Wait()
	})
	return recs, calls.Load()
}

func sameHeaders(pairs ...string) func(int) []string { return func(int) []string { return pairs } }

// TestBurstsShareOneRun: 20 concurrent requests run fn once whatever
// makes them compute: a miss, request directives (no-store included:
// before issue 13 each no-store request ran fn), the same credentials
// without PerUser (before: 20 runs), any credentials under
// IgnoreCredentials. Requests with different credentials and no
// IgnoreCredentials are not shared: one caller's computation never
// answers another caller.
func TestBurstsShareOneRun(t *testing.T) {
	cases := []struct {
		name    string
		adapter []Option
		hdr     func(int) []string
		calls   int64
		x       string // X-Cache of every answer ("" for any)
		cc      string // Cache-Control of every answer ("" for any)
	}{
		{"miss", nil, sameHeaders(), 1, "", ""},
		{"no-store", nil, sameHeaders("Cache-Control", "no-store"), 1, "BYPASS", "no-store"},
		{"no-cache", nil, sameHeaders("Cache-Control", "no-cache"), 1, "MISS", ""},
		{"max-age=0", nil, sameHeaders("Cache-Control", "max-age=0"), 1, "MISS", ""},
		{"Pragma", nil, sameHeaders("Pragma", "no-cache"), 1, "MISS", ""},
		{"same cookie", nil, sameHeaders("Cookie", "_ga=GA1.2.3"), 1, "BYPASS", "no-store"},
		{"same Authorization", nil, sameHeaders("Authorization", "Bearer alice"), 1, "BYPASS", "no-store"},
		{"same cookie, no-store", nil, sameHeaders("Cookie", "_ga=GA1.2.3", "Cache-Control", "no-store"), 1, "BYPASS", "no-store"},
		{"two users", nil, func(i int) []string { return []string{"Authorization", fmt.Sprint("Bearer user", i%2)} }, 2, "BYPASS", "no-store"},
		{"20 analytics cookies, IgnoreCredentials", []Option{IgnoreCredentials()},
			func(i int) []string { return []string{"Cookie", fmt.Sprint("_ga=", i)} }, 1, "", "private, max-age=60"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, calls := burst(t, 20, nil, c.adapter, c.hdr)
			if calls != c.calls {
				t.Errorf("fn calls = %d, want %d", calls, c.calls)
			}
			for i, r := range recs {
				if r.Code != 200 || r.Body.String() != "42" {
					t.Errorf("request %d: %d %q, want 200 42", i, r.Code, r.Body.String())
				}
				if x := r.Header().Get("X-Cache"); c.x != "" && x != c.x {
					t.Errorf("request %d: X-Cache = %v, want %v", i, x, c.x)
				}
				if cc := r.Header().Get("Cache-Control"); c.cc != "" && cc != c.cc {
					t.Errorf("request %d: Cache-Control = %v, want %v", i, cc, c.cc)
				}
			}
		})
	}
}

// TestBypassFlightCallerLeaves: a caller whose context ends while the
// shared computation runs gets a 503 at once; the others still get fn's
// answer, from the one run.
func TestBypassFlightCallerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var calls atomic.Int64
		f := memo.New(func(ctx context.Context, id string) (int64, error) {
			calls.Add(1)
			<-gate
			return 7, nil
		}, memo.Namespace("test.bypass.leaves"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
		h := Handler(f, func(*http.Request) (string, error) { return "k", nil }, ErrorLog(func(*http.Request, error) {}))
		serve := func(ctx context.Context) *httptest.ResponseRecorder {
			req := httptest.NewRequestWithContext(ctx, "GET", "/", nil)
			req.Header.Set("Cache-Control", "no-store")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		ctx, cancel := context.WithCancel(context.Background())
		var first, second *httptest.ResponseRecorder
		var wg sync.WaitGroup
		wg.Go(func() { first = serve(ctx) })
		wg.Go(func() { second = serve(context.Background()) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		if first == nil || first.Code != 503 {
			t.Errorf("caller that left: %v, want 503 before fn returns", first)
		}
		close(gate)
		wg.Wait()
		if second.Code != 200 || second.Body.String() != "7" || calls.Load() != 1 {
			t.Errorf("caller that stayed: %d %q, fn calls %d; want 200 7, 1", second.Code, second.Body.String(), calls.Load())
		}
	})
}

// TestBypassFlightPanics: a panic of fn in a shared computation reaches
// every request that waited for it (net/http then logs it and drops the
// connection), as a panic of fn does without sharing.
func TestBypassFlightPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		f := memo.New(func(ctx context.Context, id string) (int64, error) {
			<-gate
			panic("boom")
		}, memo.Namespace("test.bypass.panics"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
		h := Handler(f, func(*http.Request) (string, error) { return "k", nil })
		var panics atomic.Int32
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				defer func() {
					if recover() == "boom" {
						panics.Add(1)
					}
				}()
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("Cache-Control", "no-store")
				h.ServeHTTP(httptest.NewRecorder(), req)
			})
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		if n := panics.Load(); n != 3 {
			t.Errorf("requests that panicked = %d, want 3", n)
		}
	})
}

// TestIgnoreCredentials: requests with cookies or Authorization are
// answered from the cache, and Vary leaves those names out; with Public
// the answers are public.
func TestIgnoreCredentials(t *testing.T) {
	for _, c := range []struct {
		name    string
		adapter []Option
		scope   string
	}{
		{"private", []Option{IgnoreCredentials()}, "private"},
		{"public", []Option{IgnoreCredentials(), Public()}, "public"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)}, c.adapter...)
			steps := []struct {
				hdr  []string
				x, s string
			}{
				{[]string{"Cookie", "_ga=1"}, "MISS", "memo; fwd=miss; stored"},
				{[]string{"Cookie", "_ga=2"}, "HIT", "memo; hit; ttl=60"},
				{[]string{"Authorization", "Bearer bob"}, "HIT", "memo; hit; ttl=60"},
				{nil, "HIT", "memo; hit; ttl=60"},
			}
			for i, s := range steps {
				checkHeaders(t, fmt.Sprint("step ", i), fx.get("k", s.hdr...), map[string]string{
					"status": "200", "body": "1", "X-Cache": s.x, "Cache-Status": s.s,
					"Cache-Control": c.scope + ", max-age=60", "Vary": none,
				})
			}
		})
	}
}

// TestIgnoreRequestDirectives: with the option, request Cache-Control and
// Pragma change nothing: a stored answer is served while it lasts.
func TestIgnoreRequestDirectives(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)}, IgnoreRequestDirectives())
	fx.get("k")
	fx.clk.Advance(10 * time.Second)
	for _, hdr := range [][]string{
		{"Cache-Control", "no-cache"},
		{"Cache-Control", "no-store"},
		{"Cache-Control", "max-age=0"},
		{"Cache-Control", "max-age=5"},
		{"Cache-Control", "min-fresh=3600"},
		{"Pragma", "no-cache"},
	} {
		checkHeaders(t, strings.Join(hdr, ": "), fx.get("k", hdr...), map[string]string{
			"status": "200", "body": "1", "X-Cache": "HIT", "Cache-Status": "memo; hit; ttl=50",
		})
	}
	if n := fx.calls.Load(); n != 1 {
		t.Errorf("fn calls = %d, want 1", n)
	}
}

type tenantKey struct{}

// authTenant is the usual auth middleware: it reads the bearer token and
// puts the tenant in the request's context.
func authTenant(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant)))
	})
}

type tenantArg struct {
	Tenant string
	ID     string
}

// TestTenantsApart: with identity set by middleware in the request's
// context, the safe pattern (decode puts the tenant into the argument, so
// into the key) keeps two tenants apart under PerUser and under
// IgnoreCredentials, from memo's cache and through it. The unsafe pattern
// (fn reads the tenant from its context) serves the first tenant's answer
// to the second, which is why docs/http.md warns against it.
func TestTenantsApart(t *testing.T) {
	decode := func(r *http.Request) (tenantArg, error) {
		tenant, _ := r.Context().Value(tenantKey{}).(string)
		return tenantArg{Tenant: tenant, ID: r.PathValue("id")}, nil
	}
	safe := func(ctx context.Context, a tenantArg) (string, error) { return a.Tenant + "'s " + a.ID, nil }
	unsafe := func(ctx context.Context, a tenantArg) (string, error) {
		tenant, _ := ctx.Value(tenantKey{}).(string)
		return tenant + "'s " + a.ID, nil
	}
	pathOnly := func(r *http.Request) (tenantArg, error) { return tenantArg{ID: r.PathValue("id")}, nil }
	cases := []struct {
		name    string
		decode  func(*http.Request) (tenantArg, error)
		fn      func(context.Context, tenantArg) (string, error)
		adapter []Option
		leaks   bool
	}{
		{"decode puts the tenant in the key, PerUser", decode, safe, []Option{PerUser()}, false},
		{"decode puts the tenant in the key, IgnoreCredentials", decode, safe, []Option{IgnoreCredentials()}, false},
		{"fn reads the tenant from its context", pathOnly, unsafe, []Option{IgnoreCredentials()}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := memo.New(c.fn, memo.Namespace("test.tenants."+strings.ReplaceAll(t.Name(), "/", ".")),
				memo.WithBackend(memory.New()), memo.Expire(time.Minute))
			mux := http.NewServeMux()
			mux.Handle("GET /orders/{id}", authTenant(Handler(f, c.decode, c.adapter...)))
			leaked := false
			for i, tenant := range []string{"acme", "globex", "acme", "globex"} {
				req := httptest.NewRequest("GET", "/orders/7", nil)
				req.Header.Set("Authorization", "Bearer "+tenant)
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				want := `"` + tenant + `'s 7"`
				if got := rec.Body.String(); got != want {
					leaked = true
					if !c.leaks {
						t.Errorf("request %d (%s): body = %s, want %s", i, tenant, got, want)
					}
				}
				if wantX := map[bool]string{true: "MISS", false: "HIT"}[i < 2]; !c.leaks && rec.Header().Get("X-Cache") != wantX {
					t.Errorf("request %d (%s): X-Cache = %v, want %v", i, tenant, rec.Header().Get("X-Cache"), wantX)
				}
			}
			if c.leaks && !leaked {
				t.Errorf("fn reading the tenant from its context: no answer crossed tenants, want the leak the docs warn of")
			}
		})
	}
}
