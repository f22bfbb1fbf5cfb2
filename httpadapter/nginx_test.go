package httpadapter

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gregjones/httpcache"
	"github.com/rs/cors"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/internal/testenv"
)

// These tests put nginx's proxy_cache (scripts/servers.sh: Debian's
// nginx-light, proxy_cache_revalidate on, nginx's defaults otherwise) in
// front of the handler. nginx ignores Age and the client's Cache-Control,
// honours Vary, and says what it did in X-Nginx-Cache (HIT, MISS, EXPIRED,
// REVALIDATED, ...). Each test serves its own upstream on a port of its own
// under a path naming this run, so that nginx's cache, which outlives the
// run, never answers one test with another's entry.

const nginxStatus = "X-Nginx-Cache"

func quiet() Option { return ErrorLog(func(*http.Request, error) {}) }

// TestNginxFreshness: nginx serves memo's answer while memo's entry lives
// and never past it, even when the answer it stores was already old
// (memo's max-age must not outlive the entry for a cache that ignores
// Age); a stale copy is revalidated with If-None-Match and memo answers 304.
func TestNginxFreshness(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")

	t.Run("hits within the entry's life", func(t *testing.T) {
		t.Parallel()
		var c counter
		u := newUpstream(t, nginx, Handler(newCounterFunc(t, &c, 4*time.Second), PathString("id"), Public()))
		cl := newClient(t)
		for i, want := range []string{"MISS", "HIT", "HIT"} {
			g := u.get(t, cl, true, "a")
			if p := g.page(t); p.N != 1 || g.header.Get(nginxStatus) != want {
				t.Errorf("GET %d through nginx = n=%d, %s %q; want n=1, %s %q", i, p.N, nginxStatus, g.header.Get(nginxStatus), nginxStatus, want)
			}
		}
		if n := len(u.reached("a")); n != 1 {
			t.Errorf("requests reaching memo = %d, want 1 (nginx answers the others)", n)
		}
	})

	t.Run("never past the entry's life", func(t *testing.T) {
		t.Parallel()
		// memo stores the answer at t1 (a client asked memo directly);
		// nginx first asks 2.5 s later, when 1.5 s are left: it must
		// count the answer fresh for no longer than that.
		var c counter
		const expire = 4 * time.Second
		u := newUpstream(t, nginx, Handler(newCounterFunc(t, &c, expire), PathString("id"), Public()))
		cl := newClient(t)
		if p := u.get(t, cl, false, "a").page(t); p.N != 1 {
			t.Fatalf("direct GET = n=%d, want 1", p.N)
		}
		t1 := time.Now() // memo's entry expires before t1 + expire
		sleepUntil(t1.Add(2500 * time.Millisecond))
		g := u.get(t, cl, true, "a")
		if p := g.page(t); p.N != 1 || g.header.Get("X-Cache") != "HIT" {
			t.Fatalf("GET through nginx at +2.5 s = n=%d, X-Cache %q; want n=1 from memo's cache (HIT)", p.N, g.header.Get("X-Cache"))
		}
		t.Logf("memo sent Cache-Control %q, Age %q", g.header.Get("Cache-Control"), g.header.Get("Age"))
		// Within what is left of the entry's life, nginx answers (unless
		// a slow machine left memo less than a second to announce).
		if !strings.Contains(g.header.Get("Cache-Control"), "max-age=0") {
			if g := u.get(t, cl, true, "a"); g.page(t).N != 1 || g.header.Get(nginxStatus) != "HIT" {
				t.Errorf("GET through nginx right after = n=%d, %s %q; want n=1, HIT", g.page(t).N, nginxStatus, g.header.Get(nginxStatus))
			}
		}
		// nginx counts in whole seconds: one second past memo's expiry
		// it must have asked memo again.
		sleepUntil(t1.Add(expire + time.Second))
		g = u.get(t, cl, true, "a")
		if p := g.page(t); p.N == 1 {
			t.Errorf("GET through nginx 1 s past memo's expiry = n=1 (%s %q, Age %q): nginx served the expired answer; want a new one",
				nginxStatus, g.header.Get(nginxStatus), g.header.Get("Age"))
		}
	})

	t.Run("revalidated by If-None-Match, 304 from memo", func(t *testing.T) {
		t.Parallel()
		c := counter{constant: true}
		u := newUpstream(t, nginx, Handler(newCounterFunc(t, &c, 2*time.Second), PathString("id"), Public()))
		cl := newClient(t)
		g := u.get(t, cl, true, "a")
		t1 := time.Now()
		etag := g.header.Get("Etag")
		if p := g.page(t); p.N != 42 || etag == "" {
			t.Fatalf("first GET through nginx = n=%d, ETag %q; want n=42 and an ETag", p.N, etag)
		}
		// Both memo's entry and nginx's copy have expired by now.
		sleepUntil(t1.Add(3500 * time.Millisecond))
		g = u.get(t, cl, true, "a")
		if p := g.page(t); p.N != 42 || g.header.Get(nginxStatus) != "REVALIDATED" {
			t.Errorf("GET through nginx after expiry = n=%d, %s %q; want n=42, REVALIDATED", p.N, nginxStatus, g.header.Get(nginxStatus))
		}
		hops := u.reached("a")
		want := []hop{{path: hops[0].path, status: 200}, {path: hops[0].path, inm: etag, status: http.StatusNotModified}}
		if diff := cmp.Diff(want, hops, cmp.AllowUnexported(hop{})); diff != "" {
			t.Errorf("requests reaching memo (-want +got):\n%s", diff)
		}
	})
}

// notFoundErr is an error fn returns with a 404 status.
type notFoundErr struct{}

func (notFoundErr) Error() string   { return "no such record" }
func (notFoundErr) HTTPStatus() int { return http.StatusNotFound }

// TestNginxNeverStores: errors of fn and answers memo computed without its
// cache (the client's no-store, a request with credentials) are never kept
// by nginx: the next request reaches memo.
func TestNginxNeverStores(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")
	cases := []struct {
		name  string
		c     *counter
		first []string // the first request's headers
		code  int      // the first answer's status
		want  int64    // n of the second and third answers
	}{
		{name: "fn's error (500)", c: &counter{failFirst: 1, err: errors.New("boom")}, code: 500, want: 2},
		{name: "fn's error with HTTPStatus 404", c: &counter{failFirst: 1, err: notFoundErr{}}, code: 404, want: 2},
		{name: "request no-store", c: &counter{}, first: []string{"Cache-Control", "no-store"}, code: 200, want: 2},
		{name: "request with a cookie", c: &counter{}, first: []string{"Cookie", "session=s1"}, code: 200, want: 2},
		{name: "request with Authorization", c: &counter{}, first: []string{"Authorization", "Bearer t1"}, code: 200, want: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, nginx, Handler(newCounterFunc(t, tc.c, time.Minute), PathString("id"), Public(), quiet()))
			cl := newClient(t)
			g := u.get(t, cl, true, "a", tc.first...)
			if g.status != tc.code {
				t.Fatalf("first GET %v = %d %q, want %d", tc.first, g.status, g.body, tc.code)
			}
			// The second reaches memo (nginx kept nothing); the third is
			// nginx's copy of the second.
			for i, st := range []string{"MISS", "HIT"} {
				g := u.get(t, cl, true, "a")
				if p := g.page(t); p.N != tc.want || g.header.Get(nginxStatus) != st {
					t.Errorf("GET %d after it = n=%d, %s %q; want n=%d, %q", i+2, p.N, nginxStatus, g.header.Get(nginxStatus), tc.want, st)
				}
			}
			if n := len(u.reached("a")); n != 2 {
				t.Errorf("requests reaching memo = %d, want 2", n)
			}
		})
	}
}

// TestNginxCORS: behind rs/cors, which adds "Vary: Origin" and answers each
// allowed origin with its own Access-Control-Allow-Origin, nginx never
// serves one origin's answer to another: the handler keeps the Vary that
// middleware set.
func TestNginxCORS(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")
	var c counter
	mw := cors.New(cors.Options{AllowedOrigins: []string{"https://a.example", "https://b.example"}})
	u := newUpstream(t, nginx, mw.Handler(Handler(newCounterFunc(t, &c, time.Minute), PathString("id"), Public())))
	cl := newClient(t)
	for i, origin := range []string{"https://a.example", "https://b.example", "https://a.example", "", "https://b.example"} {
		var hdr []string
		if origin != "" {
			hdr = []string{"Origin", origin}
		}
		g := u.get(t, cl, true, "a", hdr...)
		g.page(t)
		if got := g.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("GET %d with Origin %q: Access-Control-Allow-Origin = %q (%s %q), want %q",
				i, origin, got, nginxStatus, g.header.Get(nginxStatus), origin)
		}
		if vary := g.header.Values("Vary"); !slices.ContainsFunc(vary, func(v string) bool { return strings.Contains(v, "Origin") }) {
			t.Errorf("GET %d with Origin %q: Vary = %q, want Origin among them", i, origin, vary)
		}
	}
}

// userKey is the context key an authentication middleware sets.
type userKey struct{}

// authenticate is the usual middleware: it puts the caller named by
// "Authorization: Bearer NAME" or the cookie "user" into the request's
// context.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ck, err := r.Cookie("user"); err == nil {
			user = ck.Value
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// byUser is the safe pattern: decode puts the caller from the context into
// the argument ("id|user"), so that the key names the caller.
func byUser(r *http.Request) (string, error) {
	user, _ := r.Context().Value(userKey{}).(string)
	return r.PathValue("id") + "|" + user, nil
}

// TestNginxUsers: two users never get each other's answer through nginx,
// whether the handler keys answers by user (PerUser) or serves public
// answers and bypasses for requests with credentials.
func TestNginxUsers(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")
	type req struct {
		hdr []string
		who string
	}
	alice := req{[]string{"Authorization", "Bearer alice"}, "alice"}
	bob := req{[]string{"Authorization", "Bearer bob"}, "bob"}
	carol := req{[]string{"Cookie", "user=carol"}, "carol"}
	dave := req{[]string{"Cookie", "user=dave"}, "dave"}
	anon := req{nil, ""}
	seq := []req{anon, alice, bob, alice, carol, dave, carol, bob, anon}
	cases := []struct {
		name string
		opts []Option
	}{
		{"PerUser", []Option{PerUser()}},
		{"Public, credentials bypass", []Option{Public()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := counter{whoFromArg: true}
			h := Handler(newCounterFunc(t, &c, time.Minute), byUser, tc.opts...)
			u := newUpstream(t, nginx, authenticate(h))
			cl := newClient(t)
			for i, r := range seq {
				g := u.get(t, cl, true, "a", r.hdr...)
				if p := g.page(t); p.Who != r.who {
					t.Errorf("GET %d as %q through nginx = the answer for %q (%s %q), want %q's",
						i, r.who, p.Who, nginxStatus, g.header.Get(nginxStatus), r.who)
				}
			}
		})
	}
}

// TestClientCacheShortLived: gregjones/httpcache, an RFC 9111 client cache
// that ignores Age, never serves an answer past memo's expiry, even one
// that was already old when it got it.
func TestClientCacheShortLived(t *testing.T) {
	t.Parallel()
	var c counter
	const expire = 4 * time.Second
	u := newUpstream(t, "", Handler(newCounterFunc(t, &c, expire), PathString("id"), Public()))
	plain := newClient(t)
	tr := httpcache.NewMemoryCacheTransport()
	tr.Transport = plain.Transport
	cached := tr.Client()
	if p := u.get(t, plain, false, "a").page(t); p.N != 1 {
		t.Fatalf("direct GET = n=%d, want 1", p.N)
	}
	t1 := time.Now() // memo's entry expires before t1 + expire
	sleepUntil(t1.Add(2500 * time.Millisecond))
	g := u.get(t, cached, false, "a")
	if p := g.page(t); p.N != 1 || g.header.Get(httpcache.XFromCache) != "" {
		t.Fatalf("GET through httpcache at +2.5 s = n=%d, from its cache %q; want n=1 from memo", p.N, g.header.Get(httpcache.XFromCache))
	}
	t.Logf("memo sent Cache-Control %q, Age %q, Date %q", g.header.Get("Cache-Control"), g.header.Get("Age"), g.header.Get("Date"))
	sleepUntil(t1.Add(expire + 250*time.Millisecond))
	g = u.get(t, cached, false, "a")
	if p := g.page(t); p.N == 1 {
		t.Errorf("GET through httpcache 0.25 s past memo's expiry = n=1 (from its cache %q): served the expired answer; want a new one",
			g.header.Get(httpcache.XFromCache))
	}
}

// TestNginxIgnoreCredentials: under IgnoreCredentials (with Public), the
// answer does not depend on who asks, so nginx keeps one copy for every
// caller, cookies and Authorization included: memo runs fn once and nginx
// answers the rest. Without IgnoreCredentials every request with
// credentials reaches memo, which bypasses its cache.
func TestNginxIgnoreCredentials(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")
	seq := [][]string{nil, {"Cookie", "_ga=GA1.1"}, {"Cookie", "_ga=GA1.2"}, {"Authorization", "Bearer alice"}, nil}
	cases := []struct {
		name    string
		opts    []Option
		wantN   []int64
		reached int
	}{
		{"IgnoreCredentials", []Option{Public(), IgnoreCredentials()}, []int64{1, 1, 1, 1, 1}, 1},
		{"default", []Option{Public()}, []int64{1, 2, 3, 4, 1}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c counter
			u := newUpstream(t, nginx, Handler(newCounterFunc(t, &c, time.Minute), PathString("id"), tc.opts...))
			cl := newClient(t)
			var gotN []int64
			for _, hdr := range seq {
				gotN = append(gotN, u.get(t, cl, true, "a", hdr...).page(t).N)
			}
			if diff := cmp.Diff(tc.wantN, gotN); diff != "" {
				t.Errorf("answers through nginx (-want +got):\n%s", diff)
			}
			if n := len(u.reached("a")); n != tc.reached {
				t.Errorf("requests reaching memo = %d, want %d", n, tc.reached)
			}
		})
	}
}

// TestNginxNegativeAnswer: a not-found that memo remembers (NegativeCache)
// is answered 404 from memo's cache; nginx may keep that 404 while memo
// does, and never past it: once memo forgets it, the next request through
// nginx reaches fn, which now finds the record.
func TestNginxNegativeAnswer(t *testing.T) {
	nginx := testenv.Require(t, "MEMO_NGINX_ADDR")
	t.Parallel()
	c := counter{failFirst: 1, err: notFoundErr{}}
	const remember = 4 * time.Second
	f := newCounterFunc(t, &c, time.Minute, memo.NegativeCache(remember, notFoundErr{}))
	u := newUpstream(t, nginx, Handler(f, PathString("id"), Public(), quiet()))
	cl := newClient(t)
	if g := u.get(t, cl, false, "a"); g.status != http.StatusNotFound {
		t.Fatalf("direct GET = %d %q, want 404", g.status, g.body)
	}
	t1 := time.Now() // memo forgets the not-found before t1 + remember
	sleepUntil(t1.Add(2500 * time.Millisecond))
	g := u.get(t, cl, true, "a")
	if g.status != http.StatusNotFound || g.header.Get("X-Cache") != "HIT" {
		t.Fatalf("GET through nginx at +2.5 s = %d, X-Cache %q; want 404 from memo's cache (HIT)", g.status, g.header.Get("X-Cache"))
	}
	t.Logf("memo sent Cache-Control %q for the remembered 404", g.header.Get("Cache-Control"))
	sleepUntil(t1.Add(remember + time.Second))
	g = u.get(t, cl, true, "a")
	if g.status != http.StatusOK {
		t.Errorf("GET through nginx 1 s after memo forgot the 404 = %d (%s %q); want 200 from fn", g.status, nginxStatus, g.header.Get(nginxStatus))
	} else if p := g.page(t); p.N != 2 {
		t.Errorf("GET through nginx 1 s after memo forgot the 404 = n=%d, want 2", p.N)
	}
}
