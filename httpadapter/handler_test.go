package httpadapter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// fixture serves a memoized counter at /v/{id} through a real loopback
// server: each computation returns the number of computations so far, or 42
// when constant is set.
type fixture struct {
	srv      *httptest.Server
	f        *memo.Func[string, int64]
	calls    atomic.Int64
	constant bool
}

type fixtureOpts struct {
	memo     []memo.Option
	adapter  []Option
	constant bool
	decode   func(*http.Request) (string, error)
	wrap     func(http.Handler) http.Handler
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	fx := &fixture{constant: o.constant}
	fn := func(ctx context.Context, id string) (int64, error) {
		n := fx.calls.Add(1)
		if fx.constant {
			return 42, nil
		}
		return n, nil
	}
	opts := append([]memo.Option{
		memo.Namespace("test." + strings.ReplaceAll(t.Name(), "/", ".")),
		memo.WithBackend(memory.New()),
		memo.Expire(5 * time.Second),
	}, o.memo...)
	fx.f = memo.New(fn, opts...)
	decode := o.decode
	if decode == nil {
		decode = PathString("id")
	}
	var h http.Handler = Handler(fx.f, decode, o.adapter...)
	if o.wrap != nil {
		h = o.wrap(h)
	}
	mux := http.NewServeMux()
	mux.Handle("/v/{id}", h)
	fx.srv = httptest.NewServer(mux)
	t.Cleanup(fx.srv.Close)
	return fx
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request; hdr holds header name/value pairs (a name may repeat
// to send several lines).
func (fx *fixture) do(t *testing.T, method, path string, hdr ...string) response {
	t.Helper()
	return doReq(t, fx.srv.Client(), method, fx.srv.URL+path, hdr...)
}

func doReq(t *testing.T, c *http.Client, method, url string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{res.StatusCode, res.Header, b.String()}
}

var (
	etagRE       = regexp.MustCompile(`^"[A-Za-z0-9_-]{22}"$`)
	hitStatusRE  = regexp.MustCompile(`^memo; hit; ttl=[0-5]$`)
	privateAgeRE = regexp.MustCompile(`^private, max-age=[0-5]$`)
)

// TestFastAPISequence replays fastapi-cache's own test: expire=5, GET -> 1
// (MISS); GET -> 1 (HIT); no-cache -> 2; GET -> 2; no-store -> 3; GET -> 2.
func TestFastAPISequence(t *testing.T) {
	fx := newFixture(t, fixtureOpts{})
	steps := []struct {
		name     string
		hdr      []string
		body     string
		xcache   string
		status   string // Cache-Status; "hit" matches hitStatusRE
		cacheCtl string // "private" matches privateAgeRE
	}{
		{"GET", nil, "1", "MISS", "memo; fwd=miss; stored", "private"},
		{"GET again", nil, "1", "HIT", "hit", "private"},
		{"no-cache", []string{"Cache-Control", "no-cache"}, "2", "MISS", "memo; fwd=request; stored", "private"},
		{"GET after no-cache", nil, "2", "HIT", "hit", "private"},
		{"no-store", []string{"Cache-Control", "no-store"}, "3", "BYPASS", "memo; fwd=request", "no-store"},
		{"GET after no-store", nil, "2", "HIT", "hit", "private"},
	}
	for _, s := range steps {
		r := fx.do(t, "GET", "/v/x", s.hdr...)
		if r.status != 200 {
			t.Fatalf("%s: status = %v, want 200", s.name, r.status)
		}
		if r.body != s.body {
			t.Errorf("%s: body = %v, want %v", s.name, r.body, s.body)
		}
		if got := r.header.Get("X-Cache"); got != s.xcache {
			t.Errorf("%s: X-Cache = %v, want %v", s.name, got, s.xcache)
		}
		got := r.header.Get("Cache-Status")
		if s.status == "hit" && !hitStatusRE.MatchString(got) || s.status != "hit" && got != s.status {
			t.Errorf("%s: Cache-Status = %v, want %v", s.name, got, s.status)
		}
		cc := r.header.Get("Cache-Control")
		if s.cacheCtl == "private" && !privateAgeRE.MatchString(cc) || s.cacheCtl != "private" && cc != s.cacheCtl {
			t.Errorf("%s: Cache-Control = %v, want %v", s.name, cc, s.cacheCtl)
		}
	}
	if n := fx.calls.Load(); n != 3 {
		t.Errorf("fn calls = %v, want 3", n)
	}
}

// TestExpiry: after the expiry the entry is a MISS with a new value, and a
// sub-second remainder is max-age=0, never negative.
func TestExpiry(t *testing.T) {
	fx := newFixture(t, fixtureOpts{memo: []memo.Option{memo.Expire(300 * time.Millisecond)}})
	r := fx.do(t, "GET", "/v/x")
	if got := r.header.Get("Cache-Control"); got != "private, max-age=0" {
		t.Errorf("Cache-Control = %v, want private, max-age=0", got)
	}
	time.Sleep(400 * time.Millisecond)
	r = fx.do(t, "GET", "/v/x")
	if r.body != "2" || r.header.Get("X-Cache") != "MISS" {
		t.Errorf("after expiry: body, X-Cache = %v, %v, want 2, MISS", r.body, r.header.Get("X-Cache"))
	}
}

// TestCachedAnswerHeaders checks every header of a MISS and of the HIT that
// follows.
func TestCachedAnswerHeaders(t *testing.T) {
	fx := newFixture(t, fixtureOpts{})
	start := time.Now().Truncate(time.Second)
	miss := fx.do(t, "GET", "/v/x")
	hit := fx.do(t, "GET", "/v/x")
	for _, r := range []struct {
		name string
		r    response
		x    string
	}{{"miss", miss, "MISS"}, {"hit", hit, "HIT"}} {
		h := r.r.header
		if got := h.Get("Etag"); !etagRE.MatchString(got) {
			t.Errorf("%s: ETag = %v, want a quoted strong 22-char tag", r.name, got)
		}
		if got := h.Get("Cache-Control"); !privateAgeRE.MatchString(got) {
			t.Errorf("%s: Cache-Control = %v, want private, max-age=0..5", r.name, got)
		}
		if got := h.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type = %v, want application/json", r.name, got)
		}
		if got := h.Get("Content-Length"); got != strconv.Itoa(len(r.r.body)) {
			t.Errorf("%s: Content-Length = %v, want %v", r.name, got, len(r.r.body))
		}
		if got := h.Get("Vary"); got != "Authorization, Cookie" {
			t.Errorf("%s: Vary = %v, want Authorization, Cookie", r.name, got)
		}
		if got := h.Get("X-Cache"); got != r.x {
			t.Errorf("%s: X-Cache = %v, want %v", r.name, got, r.x)
		}
		if got, ok := h["Age"]; ok {
			t.Errorf("%s: Age = %q, want none (max-age alone is the time left)", r.name, got)
		}
		lm, err := http.ParseTime(h.Get("Last-Modified"))
		if err != nil || lm.Before(start) || lm.After(time.Now()) {
			t.Errorf("%s: Last-Modified = %v (%v), want a time of this test", r.name, h.Get("Last-Modified"), err)
		}
	}
	for _, k := range []string{"Etag", "Last-Modified", "Vary", "Content-Length"} {
		if miss.header.Get(k) != hit.header.Get(k) {
			t.Errorf("%s: hit %v, want the miss's %v", k, hit.header.Get(k), miss.header.Get(k))
		}
	}
	if hit.body != miss.body {
		t.Errorf("hit body = %v, want %v", hit.body, miss.body)
	}
}

func TestNoExpiry(t *testing.T) {
	fx := newFixture(t, fixtureOpts{memo: []memo.Option{memo.Expire(0)}})
	fx.do(t, "GET", "/v/x")
	r := fx.do(t, "GET", "/v/x")
	if got := r.header.Get("Cache-Control"); got != "private, no-cache" {
		t.Errorf("Cache-Control = %v, want private, no-cache", got)
	}
	if got := r.header.Get("Cache-Status"); got != "memo; hit" {
		t.Errorf("Cache-Status = %v, want memo; hit", got)
	}
}

func TestHead(t *testing.T) {
	fx := newFixture(t, fixtureOpts{})
	first := fx.do(t, "HEAD", "/v/x")
	if first.status != 200 || first.body != "" || first.header.Get("X-Cache") != "MISS" {
		t.Errorf("first HEAD = %v %q %v, want 200, no body, MISS", first.status, first.body, first.header.Get("X-Cache"))
	}
	get := fx.do(t, "GET", "/v/x")
	if get.body != "1" || get.header.Get("X-Cache") != "HIT" {
		t.Errorf("GET after HEAD = %v %v, want 1 HIT (HEAD stores)", get.body, get.header.Get("X-Cache"))
	}
	head := fx.do(t, "HEAD", "/v/x")
	if head.body != "" {
		t.Errorf("HEAD body = %q, want none", head.body)
	}
	pick := func(h http.Header) map[string]string {
		m := map[string]string{}
		for _, k := range []string{"Etag", "Content-Length", "Content-Type", "Vary", "Last-Modified", "X-Cache"} {
			m[k] = h.Get(k)
		}
		return m
	}
	if diff := cmp.Diff(pick(get.header), pick(head.header)); diff != "" {
		t.Errorf("HEAD headers differ from GET's (-get +head):\n%s", diff)
	}
	if head.header.Get("Content-Length") != "1" {
		t.Errorf("HEAD Content-Length = %v, want 1", head.header.Get("Content-Length"))
	}
	if n := fx.calls.Load(); n != 1 {
		t.Errorf("fn calls = %v, want 1", n)
	}
}

func TestOtherMethodsBypass(t *testing.T) {
	fx := newFixture(t, fixtureOpts{})
	if r := fx.do(t, "GET", "/v/x"); r.body != "1" {
		t.Fatalf("GET = %v, want 1", r.body)
	}
	etag := fx.do(t, "GET", "/v/x").header.Get("Etag")
	for i, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		r := fx.do(t, m, "/v/x", "If-None-Match", etag, "Cache-Control", "max-age=60")
		if want := strconv.Itoa(i + 2); r.status != 200 || r.body != want {
			t.Errorf("%s = %v %v, want 200 %v (fn runs every time)", m, r.status, r.body, want)
		}
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type = %v, want application/json", m, got)
		}
		for _, k := range []string{"Etag", "Cache-Control", "Cache-Status", "X-Cache", "Last-Modified", "Vary", "Age"} {
			if v, ok := r.header[k]; ok {
				t.Errorf("%s: %s = %v, want no caching header", m, k, v)
			}
		}
	}
	if r := fx.do(t, "GET", "/v/x"); r.body != "1" || r.header.Get("X-Cache") != "HIT" {
		t.Errorf("GET after other methods = %v %v, want 1 HIT (nothing stored)", r.body, r.header.Get("X-Cache"))
	}
}

func TestConditional(t *testing.T) {
	// A constant function, so that a recomputed answer matches the old ETag.
	fx := newFixture(t, fixtureOpts{constant: true})
	first := fx.do(t, "GET", "/v/x")
	etag, lm := first.header.Get("Etag"), first.header.Get("Last-Modified")
	lmTime, _ := http.ParseTime(lm)
	past := lmTime.Add(-time.Hour).Format(http.TimeFormat)
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	cases := []struct {
		name    string
		hdr     []string
		want    int
		hitOnly bool // If-Modified-Since: a miss has a new Last-Modified
	}{
		{"no condition", nil, 200, false},
		{"exact", []string{"If-None-Match", etag}, 304, false},
		{"weak form", []string{"If-None-Match", "W/" + etag}, 304, false},
		{"star", []string{"If-None-Match", "*"}, 304, false},
		{"list", []string{"If-None-Match", `"a", W/"b",` + etag + `, "c"`}, 304, false},
		{"list without spaces", []string{"If-None-Match", `"a",` + etag}, 304, false},
		{"two lines", []string{"If-None-Match", `"a"`, "If-None-Match", etag}, 304, false},
		{"non-matching list", []string{"If-None-Match", `"a", W/"b", "c"`}, 200, false},
		{"unquoted", []string{"If-None-Match", strings.Trim(etag, `"`)}, 200, false},
		{"lowercase weak prefix", []string{"If-None-Match", "w/" + etag}, 200, false},
		{"malformed before match", []string{"If-None-Match", `foo, ` + etag}, 200, false},
		{"If-None-Match wins over If-Modified-Since", []string{"If-None-Match", `"a"`, "If-Modified-Since", lm}, 200, false},
		{"If-Modified-Since equal", []string{"If-Modified-Since", lm}, 304, true},
		{"If-Modified-Since earlier", []string{"If-Modified-Since", past}, 200, true},
		{"If-Modified-Since in the future", []string{"If-Modified-Since", future}, 200, true},
		{"If-Modified-Since garbage", []string{"If-Modified-Since", "yesterday"}, 200, true},
	}
	for _, state := range []string{"hit", "miss"} {
		for _, c := range cases {
			if state == "miss" && c.hitOnly {
				continue
			}
			t.Run(state+"/"+c.name, func(t *testing.T) {
				if state == "miss" {
					if err := fx.f.Forget(context.Background(), "x"); err != nil {
						t.Fatal(err)
					}
				}
				r := fx.do(t, "GET", "/v/x", c.hdr...)
				if r.status != c.want {
					t.Fatalf("status = %v, want %v", r.status, c.want)
				}
				wantX := map[string]string{"hit": "HIT", "miss": "MISS"}[state]
				if got := r.header.Get("X-Cache"); got != wantX {
					t.Errorf("X-Cache = %v, want %v", got, wantX)
				}
				if got := r.header.Get("Etag"); got != etag {
					t.Errorf("ETag = %v, want %v", got, etag)
				}
				if got := r.header.Get("Vary"); got != "Authorization, Cookie" {
					t.Errorf("Vary = %v, want Authorization, Cookie", got)
				}
				if got := r.header.Get("Cache-Control"); !privateAgeRE.MatchString(got) {
					t.Errorf("Cache-Control = %v, want private, max-age=N", got)
				}
				if c.want == 304 {
					if r.body != "" {
						t.Errorf("304 body = %q, want none", r.body)
					}
					for _, k := range []string{"Content-Type", "Last-Modified"} {
						if v, ok := r.header[k]; ok {
							t.Errorf("304 %s = %v, want none", k, v)
						}
					}
				} else if r.body != "42" {
					t.Errorf("body = %v, want 42", r.body)
				}
			})
		}
	}
}

func TestRequestDirectives(t *testing.T) {
	// Each case starts with value 1 stored; "after" is a plain GET.
	cases := []struct {
		name   string
		hdr    []string
		x      string // X-Cache of the request
		body   string
		after  string // body of the GET that follows
		status string // Cache-Status of the request
	}{
		{"none", nil, "HIT", "1", "1", "hit"},
		{"no-cache", []string{"Cache-Control", "no-cache"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"No-Cache upper case", []string{"Cache-Control", "No-Cache"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"max-age=0", []string{"Cache-Control", "max-age=0"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"max-age quoted 0", []string{"Cache-Control", `max-age="0"`}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"no-cache in a list", []string{"Cache-Control", "max-stale=10 ,  no-cache , x"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"max-age=60", []string{"Cache-Control", "max-age=60"}, "HIT", "1", "1", "hit"},
		{"max-age junk", []string{"Cache-Control", "max-age=0x"}, "HIT", "1", "1", "hit"},
		{"quoted no-store is an argument", []string{"Cache-Control", `ext="no-store, no-cache", max-age=60`}, "HIT", "1", "1", "hit"},
		{"escaped quote in argument", []string{"Cache-Control", `ext="a\", no-store"`}, "HIT", "1", "1", "hit"},
		{"no-storex", []string{"Cache-Control", "no-storex"}, "HIT", "1", "1", "hit"},
		{"no-store", []string{"Cache-Control", "no-store"}, "BYPASS", "2", "1", "memo; fwd=request"},
		{"NO-STORE", []string{"Cache-Control", "NO-STORE"}, "BYPASS", "2", "1", "memo; fwd=request"},
		{"no-store wins over no-cache", []string{"Cache-Control", "no-cache, no-store"}, "BYPASS", "2", "1", "memo; fwd=request"},
		{"no-store on a second line", []string{"Cache-Control", "max-age=60", "Cache-Control", "no-store"}, "BYPASS", "2", "1", "memo; fwd=request"},
		{"min-fresh beyond expiry", []string{"Cache-Control", "min-fresh=3600"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"min-fresh within expiry", []string{"Cache-Control", "min-fresh=1"}, "HIT", "1", "1", "hit"},
		{"Pragma no-cache", []string{"Pragma", "no-cache"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"Pragma NO-CACHE", []string{"Pragma", "NO-CACHE"}, "MISS", "2", "2", "memo; fwd=request; stored"},
		{"Pragma ignored beside Cache-Control", []string{"Pragma", "no-cache", "Cache-Control", "max-age=60"}, "HIT", "1", "1", "hit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, fixtureOpts{})
			fx.do(t, "GET", "/v/x")
			r := fx.do(t, "GET", "/v/x", c.hdr...)
			if r.body != c.body {
				t.Errorf("body = %v, want %v", r.body, c.body)
			}
			if got := r.header.Get("X-Cache"); got != c.x {
				t.Errorf("X-Cache = %v, want %v", got, c.x)
			}
			got := r.header.Get("Cache-Status")
			if c.status == "hit" && !hitStatusRE.MatchString(got) || c.status != "hit" && got != c.status {
				t.Errorf("Cache-Status = %v, want %v", got, c.status)
			}
			if a := fx.do(t, "GET", "/v/x"); a.body != c.after {
				t.Errorf("next GET body = %v, want %v", a.body, c.after)
			}
		})
	}
}

// TestRequestMaxAge: a hit older than the request's max-age is recomputed.
func TestRequestMaxAge(t *testing.T) {
	fx := newFixture(t, fixtureOpts{})
	fx.do(t, "GET", "/v/x")
	time.Sleep(1100 * time.Millisecond)
	if r := fx.do(t, "GET", "/v/x", "Cache-Control", "max-age=3"); r.body != "1" {
		t.Errorf("max-age=3 at age 1.1s: body = %v, want 1", r.body)
	}
	r := fx.do(t, "GET", "/v/x", "Cache-Control", "max-age=1")
	if r.body != "2" || r.header.Get("Cache-Status") != "memo; fwd=request; stored" {
		t.Errorf("max-age=1 at age 1.1s: body, Cache-Status = %v, %v, want 2, memo; fwd=request; stored", r.body, r.header.Get("Cache-Status"))
	}
}

func TestCredentials(t *testing.T) {
	t.Run("shared key bypasses", func(t *testing.T) {
		fx := newFixture(t, fixtureOpts{})
		steps := []struct {
			hdr            []string
			body, x, cc, s string
		}{
			{nil, "1", "MISS", "private", "memo; fwd=miss; stored"},
			{[]string{"Authorization", "Bearer alice"}, "2", "BYPASS", "no-store", "memo; fwd=bypass; detail=credentials"},
			{[]string{"Cookie", "session=bob"}, "3", "BYPASS", "no-store", "memo; fwd=bypass; detail=credentials"},
			{[]string{"Authorization", ""}, "4", "BYPASS", "no-store", "memo; fwd=bypass; detail=credentials"},
			{nil, "1", "HIT", "private", "hit"},
		}
		for i, s := range steps {
			r := fx.do(t, "GET", "/v/x", s.hdr...)
			if r.body != s.body || r.header.Get("X-Cache") != s.x {
				t.Errorf("step %d: body, X-Cache = %v, %v, want %v, %v", i, r.body, r.header.Get("X-Cache"), s.body, s.x)
			}
			cc := r.header.Get("Cache-Control")
			if s.cc == "private" && !privateAgeRE.MatchString(cc) || s.cc != "private" && cc != s.cc {
				t.Errorf("step %d: Cache-Control = %v, want %v", i, cc, s.cc)
			}
			cs := r.header.Get("Cache-Status")
			if s.s == "hit" && !hitStatusRE.MatchString(cs) || s.s != "hit" && cs != s.s {
				t.Errorf("step %d: Cache-Status = %v, want %v", i, cs, s.s)
			}
			if got := r.header.Get("Vary"); got != "Authorization, Cookie" {
				t.Errorf("step %d: Vary = %v, want Authorization, Cookie", i, got)
			}
		}
	})
	t.Run("PerUser caches per user", func(t *testing.T) {
		byUser := func(r *http.Request) (string, error) {
			return r.PathValue("id") + "." + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), nil
		}
		fx := newFixture(t, fixtureOpts{adapter: []Option{PerUser()}, decode: byUser})
		steps := []struct {
			user, body, x string
		}{
			{"alice", "1", "MISS"},
			{"alice", "1", "HIT"},
			{"bob", "2", "MISS"},
			{"bob", "2", "HIT"},
			{"alice", "1", "HIT"},
		}
		for i, s := range steps {
			r := fx.do(t, "GET", "/v/x", "Authorization", "Bearer "+s.user)
			if r.body != s.body || r.header.Get("X-Cache") != s.x {
				t.Errorf("step %d (%s): body, X-Cache = %v, %v, want %v, %v", i, s.user, r.body, r.header.Get("X-Cache"), s.body, s.x)
			}
			if cc := r.header.Get("Cache-Control"); !privateAgeRE.MatchString(cc) {
				t.Errorf("step %d: Cache-Control = %v, want private, max-age=N", i, cc)
			}
		}
	})
}

func TestPublic(t *testing.T) {
	fx := newFixture(t, fixtureOpts{adapter: []Option{Public()}})
	r := fx.do(t, "GET", "/v/x")
	if got := r.header.Get("Cache-Control"); !regexp.MustCompile(`^public, max-age=[0-5]$`).MatchString(got) {
		t.Errorf("Cache-Control = %v, want public, max-age=N", got)
	}
	// A middleware that set a cookie before the handler ran: the answer
	// must not go to shared caches.
	withCookie := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
			h.ServeHTTP(w, r)
		})
	}
	fx = newFixture(t, fixtureOpts{adapter: []Option{Public()}, wrap: withCookie})
	r = fx.do(t, "GET", "/v/x")
	if got := r.header.Get("Cache-Control"); !privateAgeRE.MatchString(got) {
		t.Errorf("with Set-Cookie: Cache-Control = %v, want private, max-age=N", got)
	}
}

// TestDisabled: with memo.Enabled(false), fn runs every time and no caching
// header is sent (fastapi-cache's behaviour 2).
func TestDisabled(t *testing.T) {
	fx := newFixture(t, fixtureOpts{memo: []memo.Option{memo.Enabled(false)}})
	for i := 1; i <= 2; i++ {
		r := fx.do(t, "GET", "/v/x", "If-None-Match", "*")
		if r.status != 200 || r.body != strconv.Itoa(i) {
			t.Errorf("call %d: %v %v, want 200 %v", i, r.status, r.body, i)
		}
		for _, k := range []string{"Etag", "Cache-Control", "Cache-Status", "X-Cache", "Last-Modified", "Vary"} {
			if v, ok := r.header[k]; ok {
				t.Errorf("call %d: %s = %v, want no caching header", i, k, v)
			}
		}
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("call %d: Content-Type = %v, want application/json", i, got)
		}
	}
}

func TestOptionsHeaders(t *testing.T) {
	cases := []struct {
		name      string
		opts      []Option
		header    string // where HIT/MISS should be, "" for nowhere
		vary      string
		absentHdr string
	}{
		{"default", nil, "X-Cache", "Authorization, Cookie", ""},
		{"renamed", []Option{CacheHeader("x-fastapi-cache")}, "X-Fastapi-Cache", "Authorization, Cookie", "X-Cache"},
		{"off", []Option{CacheHeader("")}, "", "Authorization, Cookie", "X-Cache"},
		{"vary", []Option{Vary("accept-language", "Cookie"), Vary("X-Tenant")}, "X-Cache", "Authorization, Cookie, Accept-Language, X-Tenant", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, fixtureOpts{adapter: c.opts})
			r := fx.do(t, "GET", "/v/x")
			if c.header != "" && r.header.Get(c.header) != "MISS" {
				t.Errorf("%s = %v, want MISS", c.header, r.header.Get(c.header))
			}
			if c.absentHdr != "" && r.header.Get(c.absentHdr) != "" {
				t.Errorf("%s = %v, want none", c.absentHdr, r.header.Get(c.absentHdr))
			}
			if r.header.Get("Cache-Status") != "memo; fwd=miss; stored" {
				t.Errorf("Cache-Status = %v, want memo; fwd=miss; stored", r.header.Get("Cache-Status"))
			}
			if got := r.header.Get("Vary"); got != c.vary {
				t.Errorf("Vary = %v, want %v", got, c.vary)
			}
		})
	}
}

func TestPanics(t *testing.T) {
	f := memo.New(func(ctx context.Context, s string) (int, error) { return 0, nil }, memo.Namespace("test.panics"))
	cases := []struct {
		name string
		fn   func()
	}{
		{"nil func", func() { Handler[string, int](nil, PathString("id")) }},
		{"nil decode", func() { Handler(f, nil) }},
		{"Public and PerUser", func() { Handler(f, PathString("id"), Public(), PerUser()) }},
		{"bad CacheHeader", func() { CacheHeader("X Cache") }},
		{"bad Vary", func() { Vary("a:b") }},
		{"nil ErrorStatus", func() { ErrorStatus(nil) }},
		{"nil ErrorLog", func() { ErrorLog(nil) }},
		{"IgnoreCredentials and PerUser", func() { Handler(f, PathString("id"), IgnoreCredentials(), PerUser()) }},
		{"nil ErrorBody", func() { ErrorBody(nil) }},
		{"bad ContentType", func() { ContentType("text/html; charset") }},
		{"Error with a 2xx", func() { _ = Error(200, "ok") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "httpadapter: ") {
					t.Errorf("panic = %v, want an httpadapter: message", r)
				}
			}()
			c.fn()
		})
	}
}

type statusErr struct {
	code int
	msg  string
}

func (e statusErr) Error() string   { return e.msg }
func (e statusErr) HTTPStatus() int { return e.code }

var errConflict = errors.New("conflict: row 7 locked by txn 99")

func TestErrors(t *testing.T) {
	var logged []error
	var mu sync.Mutex
	calls := map[string]int{}
	fn := func(ctx context.Context, id string) (int, error) {
		mu.Lock()
		calls[id]++
		mu.Unlock()
		switch id {
		case "missing":
			return 0, statusErr{404, "user 7 not in table users"}
		case "wrapped":
			return 0, fmt.Errorf("lookup: %w", statusErr{410, "gone from shard 3"})
		case "boom":
			return 0, errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user admin")
		case "conflict":
			return 0, errConflict
		case "silly":
			return 0, statusErr{200, "status 200 is not an error status"}
		}
		return 1, nil
	}
	decode := func(r *http.Request) (string, error) {
		switch id := r.PathValue("id"); id {
		case "bad":
			return "", errors.New("id must be lowercase\n<b>x</b>")
		case "unauth":
			return "", statusErr{401, "token expired"}
		case "decode-internal":
			return "", errors.New("decode: redis at 10.0.0.8 unreachable")
		default:
			return id, nil
		}
	}
	f := memo.New(fn, memo.Namespace("test.errors"), memo.WithBackend(memory.New()))
	h := Handler(f, decode,
		ErrorLog(func(r *http.Request, err error) { mu.Lock(); logged = append(logged, err); mu.Unlock() }),
		ErrorStatus(func(err error) int {
			switch {
			case errors.Is(err, errConflict):
				return 409
			case err.Error() == "decode: redis at 10.0.0.8 unreachable":
				return 503
			}
			return 0
		}))
	mux := http.NewServeMux()
	mux.Handle("/e/{id}", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	cases := []struct {
		id     string
		status int
		body   string
		logged bool
	}{
		{"bad", 400, "Bad Request: id must be lowercase <b>x</b>\n", false},
		{"unauth", 401, "Unauthorized: token expired\n", false},
		{"decode-internal", 503, "Service Unavailable\n", true},
		{"missing", 404, "Not Found\n", false},
		{"wrapped", 410, "Gone\n", false},
		{"boom", 500, "Internal Server Error\n", true},
		{"conflict", 409, "Conflict\n", false},
		{"silly", 500, "Internal Server Error\n", true},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			mu.Lock()
			logged = nil
			mu.Unlock()
			for i := range 2 {
				r := doReq(t, srv.Client(), "GET", srv.URL+"/e/"+c.id)
				if r.status != c.status {
					t.Errorf("call %d: status = %v, want %v", i, r.status, c.status)
				}
				if r.body != c.body {
					t.Errorf("call %d: body = %q, want %q", i, r.body, c.body)
				}
				if got := r.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("call %d: Cache-Control = %v, want no-store", i, got)
				}
				for _, k := range []string{"Etag", "X-Cache", "Cache-Status", "Last-Modified"} {
					if v, ok := r.header[k]; ok {
						t.Errorf("call %d: %s = %v, want none on an error", i, k, v)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if c.logged && len(logged) != 2 || !c.logged && len(logged) != 0 {
				t.Errorf("ErrorLog calls = %v, want %v", len(logged), map[bool]int{true: 2}[c.logged])
			}
			if !strings.HasPrefix(c.id, "decode") && c.id != "bad" && c.id != "unauth" && calls[c.id] != 2 {
				t.Errorf("fn calls = %v, want 2 (errors are never cached)", calls[c.id])
			}
		})
	}
}

// TestErrorLogDefault: without ErrorLog, 500s go to slog.Default at
// LevelError, with the error that the client never sees.
func TestErrorLogDefault(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	f := memo.New(func(ctx context.Context, s string) (int, error) { return 0, errors.New("s3cret") },
		memo.Namespace("test.errorlog"), memo.WithBackend(memory.New()))
	rec := httptest.NewRecorder()
	Handler(f, func(*http.Request) (string, error) { return "k", nil }).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "s3cret") {
		t.Errorf("answer = %v %q, want 500 without the error text", rec.Code, rec.Body.String())
	}
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "s3cret") {
		t.Errorf("log = %q, want an ERROR record with the error", buf.String())
	}
}

// TestUnencodable: an answer that memo cannot encode is a logged 500.
func TestUnencodable(t *testing.T) {
	var logged atomic.Int32
	f := memo.New(func(ctx context.Context, s string) (map[string]any, error) {
		return map[string]any{"f": func() {}}, nil
	},
		memo.Namespace("test.unencodable"), memo.WithBackend(memory.New()), memo.OnError(func(context.Context, error) {}))
	srv := httptest.NewServer(Handler(f, func(*http.Request) (string, error) { return "k", nil },
		ErrorLog(func(*http.Request, error) { logged.Add(1) })))
	defer srv.Close()
	r := doReq(t, srv.Client(), "GET", srv.URL)
	if r.status != 500 || r.body != "Internal Server Error\n" || logged.Load() != 1 {
		t.Errorf("answer = %v %q, logged %v, want 500 Internal Server Error, logged 1", r.status, r.body, logged.Load())
	}
}

// TestClientGone: when the request's context ends while fn runs, the answer
// is 503 and nothing is logged.
func TestClientGone(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := memo.New(func(ctx context.Context, s string) (int, error) { <-release; return 1, nil },
		memo.Namespace("test.gone"), memo.WithBackend(memory.New()))
	var logged atomic.Int32
	h := Handler(f, func(*http.Request) (string, error) { return "k", nil }, ErrorLog(func(*http.Request, error) { logged.Add(1) }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	if rec.Code != 503 || logged.Load() != 0 {
		t.Errorf("answer = %v, logged %v, want 503, 0", rec.Code, logged.Load())
	}
}

type point struct {
	X, Y int
	Tags []string
}

// TestETagStable: the same value has the same ETag in two Funcs on two
// backends, under another codec, and in another process; and the ETag of a
// known body is pinned, so that it survives releases.
func TestETagStable(t *testing.T) {
	v := point{X: 1, Y: 2, Tags: []string{"a"}}
	etagAndBody := func(ns string, opts ...memo.Option) (string, string) {
		f := memo.New(func(ctx context.Context, s string) (point, error) { return v, nil },
			append([]memo.Option{memo.Namespace(ns), memo.WithBackend(memory.New())}, opts...)...)
		h := Handler(f, func(*http.Request) (string, error) { return "k", nil })
		var etag, body string
		for range 2 { // miss, then hit
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if etag != "" && rec.Header().Get("Etag") != etag {
				t.Errorf("%s: hit ETag = %v, want the miss's %v", ns, rec.Header().Get("Etag"), etag)
			}
			etag, body = rec.Header().Get("Etag"), rec.Body.String()
		}
		return etag, body
	}
	e1, b1 := etagAndBody("test.etag.one")
	e2, b2 := etagAndBody("test.etag.two")
	e3, b3 := etagAndBody("test.etag.msgpack", memo.WithCodec(memo.Msgpack))
	want := `{"X":1,"Y":2,"Tags":["a"]}`
	for i, got := range []struct{ e, b string }{{e1, b1}, {e2, b2}, {e3, b3}} {
		if got.b != want {
			t.Errorf("instance %d: body = %v, want %v", i, got.b, want)
		}
		if got.e != `"ShSLoae-xA8T1StCbN0Fag"` {
			t.Errorf("instance %d: ETag = %v, want the pinned \"ShSLoae-xA8T1StCbN0Fag\"", i, got.e)
		}
	}
	if os.Getenv("HTTPADAPTER_ETAG_CHILD") == "1" {
		fmt.Println("ETAG=" + e1)
		return
	}
	child := exec.Command(os.Args[0], "-test.run=^TestETagStable$", "-test.count=1")
	child.Env = append(os.Environ(), "HTTPADAPTER_ETAG_CHILD=1")
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`ETAG=(\S+)`).FindSubmatch(out)
	if m == nil || string(m[1]) != e1 {
		t.Errorf("ETag in another process = %s, want %v\n%s", m, e1, out)
	}
}

func TestMsgpackCodecHit(t *testing.T) {
	fx := newFixture(t, fixtureOpts{memo: []memo.Option{memo.WithCodec(memo.Msgpack)}})
	miss := fx.do(t, "GET", "/v/x")
	hit := fx.do(t, "GET", "/v/x")
	if miss.body != "1" || hit.body != "1" || hit.header.Get("X-Cache") != "HIT" {
		t.Errorf("bodies = %v, %v (%v), want 1, 1 (HIT)", miss.body, hit.body, hit.header.Get("X-Cache"))
	}
	if hit.header.Get("Etag") != etagOf([]byte("1")) || hit.header.Get("Content-Length") != "1" {
		t.Errorf("ETag, Content-Length = %v, %v, want %v, 1", hit.header.Get("Etag"), hit.header.Get("Content-Length"), etagOf([]byte("1")))
	}
	if r := fx.do(t, "GET", "/v/x", "If-None-Match", hit.header.Get("Etag")); r.status != 304 {
		t.Errorf("If-None-Match: status = %v, want 304", r.status)
	}
}

// TestConcurrentMisses: concurrent requests for one missing key run fn
// once and all get its answer (memo's flights, through the adapter).
func TestConcurrentMisses(t *testing.T) {
	var calls atomic.Int64
	gate := make(chan struct{})
	f := memo.New(func(ctx context.Context, id string) (int64, error) {
		<-gate
		return calls.Add(1), nil
	}, memo.Namespace("test.concurrent"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
	mux := http.NewServeMux()
	mux.Handle("/v/{id}", Handler(f, PathString("id")))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	const n = 16
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Go(func() { bodies[i] = doReq(t, srv.Client(), "GET", srv.URL+"/v/x").body })
	}
	time.Sleep(50 * time.Millisecond) // let the requests arrive and join
	close(gate)
	wg.Wait()
	for i, b := range bodies {
		if b != "1" {
			t.Errorf("request %d: body = %v, want 1", i, b)
		}
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("fn calls = %v, want 1", c)
	}
}

// TestCodecsSameBody: under another codec the body and ETag are the bytes
// memo.JSON would have stored, for values whose JSON has escapes, maps and
// floats.
func TestCodecsSameBody(t *testing.T) {
	type rich struct {
		S string
		M map[string]float64
		P *int
	}
	v := rich{S: "<a href='x'>&é\u2028\"</a>", M: map[string]float64{"z": 1.5, "a": 1e21, "m": -0.000001}}
	serve := func(ns string, opts ...memo.Option) (string, string) {
		f := memo.New(func(ctx context.Context, s string) (rich, error) { return v, nil },
			append([]memo.Option{memo.Namespace(ns), memo.WithBackend(memory.New())}, opts...)...)
		h := Handler(f, func(*http.Request) (string, error) { return "k", nil })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec.Header().Get("Etag"), rec.Body.String()
	}
	je, jb := serve("test.codecs.json")
	me, mb := serve("test.codecs.msgpack", memo.WithCodec(memo.Msgpack))
	if jb != mb || je != me {
		t.Errorf("msgpack body, ETag = %s, %v, want the JSON codec's %s, %v", mb, me, jb, je)
	}
}

// refusingBackend accepts reads and refuses every write.
type refusingBackend struct{ *memory.Backend }

func (refusingBackend) Set(context.Context, string, []byte, time.Duration) error {
	return fmt.Errorf("refused: %w", memo.ErrTooLarge)
}

// TestBackendRefusesWrites: when the backend refuses every write, each
// request still gets fn's answer, computed afresh, and the refusals are
// reported.
func TestBackendRefusesWrites(t *testing.T) {
	var refused atomic.Int64
	fx := newFixture(t, fixtureOpts{memo: []memo.Option{
		memo.WithBackend(refusingBackend{memory.New()}),
		memo.OnError(func(_ context.Context, err error) {
			if errors.Is(err, memo.ErrTooLarge) {
				refused.Add(1)
			}
		}),
	}})
	for i, want := range []string{"1", "2"} {
		r := fx.do(t, "GET", "/v/x")
		if r.status != 200 || r.body != want || r.header.Get("X-Cache") != "MISS" {
			t.Fatalf("GET #%d = %d %q %s, want 200 %q MISS", i, r.status, r.body, r.header.Get("X-Cache"), want)
		}
	}
	deadline := time.Now().Add(2 * time.Second) // the writes follow the answers
	for refused.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := refused.Load(); n != 2 {
		t.Errorf("refused writes reported = %d, want 2", n)
	}
}
