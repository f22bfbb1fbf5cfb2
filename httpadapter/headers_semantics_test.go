package httpadapter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/cors"

	"github.com/gomemo/memo"
)

// Issue 13, headers that hold in every cache: max-age is the entry's
// remaining lifetime and no Age is sent, so that a cache that ignores Age
// (nginx, gregjones/httpcache, pquerna/cachecontrol) keeps an answer no
// longer than memo does; Vary is merged with what middleware set; a 304
// says truthfully that fn's answer was a 200; Cache-Status can be off.

// TestMaxAgeIsRemaining: on a miss, a hit, a 304 and under Public,
// max-age is the whole seconds left of the entry's life and there is no
// Age. (Before issue 13 max-age was Age + the time left: a cache ignoring
// Age counted the answer fresh for its whole lifetime from receipt.)
func TestMaxAgeIsRemaining(t *testing.T) {
	for _, tier := range freshTiers {
		for _, scope := range []string{"private", "public"} {
			t.Run(tier.name+"/"+scope, func(t *testing.T) {
				var adapter []Option
				if scope == "public" {
					adapter = append(adapter, Public())
				}
				fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Minute)}, adapter...)
				miss := fx.get("k")
				checkHeaders(t, "miss", miss, map[string]string{
					"status": "200", "Age": none, "Cache-Control": scope + ", max-age=60",
					"Cache-Status": "memo; fwd=miss; stored",
				})
				fx.clk.Advance(20500 * time.Millisecond)
				checkHeaders(t, "hit 20.5 s later", fx.get("k"), map[string]string{
					"status": "200", "Age": none, "Cache-Control": scope + ", max-age=39",
					"Cache-Status": "memo; hit; ttl=39",
				})
				checkHeaders(t, "304 20.5 s later", fx.get("k", "If-None-Match", miss.Header().Get("Etag")), map[string]string{
					"status": "304", "Age": none, "Cache-Control": scope + ", max-age=39",
					"Cache-Status": "memo; hit; ttl=39",
				})
				fx.clk.Advance(39 * time.Second)
				checkHeaders(t, "hit 0.5 s before expiry", fx.get("k"), map[string]string{
					"status": "200", "Age": none, "Cache-Control": scope + ", max-age=0",
					"Cache-Status": "memo; hit; ttl=0",
				})
			})
		}
	}
}

// setVary is a middleware that sets Vary before the handler runs, as
// rs/cors and compression middleware do.
func setVary(h http.Handler, values ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, v := range values {
			w.Header().Add("Vary", v)
		}
		h.ServeHTTP(w, r)
	})
}

// TestVaryMerged: the handler adds its Vary names to those a middleware
// set, never replacing them, with no name twice (compared
// case-insensitively), on every kind of answer that carries Vary.
func TestVaryMerged(t *testing.T) {
	cases := []struct {
		name    string
		set     []string // set by the middleware
		adapter []Option
		want    string // none: no Vary header
	}{
		{"nothing set", nil, nil, "Authorization, Cookie"},
		{"Origin", []string{"Origin"}, nil, "Origin, Authorization, Cookie"},
		{"two lines", []string{"Origin", "Accept-Encoding"}, nil, "Origin, Accept-Encoding, Authorization, Cookie"},
		{"a list, case-insensitive duplicates", []string{"origin, cookie , x-tenant"}, []Option{Vary("X-Tenant", "Accept-Language")},
			"origin, cookie, x-tenant, Authorization, Accept-Language"},
		{"IgnoreCredentials, nothing set", nil, []Option{IgnoreCredentials()}, none},
		{"IgnoreCredentials, Origin", []string{"Origin"}, []Option{IgnoreCredentials()}, "Origin"},
		{"IgnoreCredentials with Vary", []string{"Origin"}, []Option{IgnoreCredentials(), Vary("Accept-Language")}, "Origin, Accept-Language"},
	}
	errGone := errors.New("gone")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute), memo.NegativeCache(time.Minute, errGone)}, c.adapter...)
			fx.setBehave(func(_ context.Context, n int64) (int64, error) {
				if n == 3 { // after the miss and the no-store request
					return 0, errGone
				}
				return 42, nil
			})
			h := setVary(fx.h, c.set...)
			serve := func(key string, hdr ...string) *httptest.ResponseRecorder {
				req := httptest.NewRequest("GET", "/"+key, nil)
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Add(hdr[i], hdr[i+1])
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			miss := serve("k")
			want := map[string]string{"Vary": c.want}
			checkHeaders(t, "miss", miss, want)
			checkHeaders(t, "hit", serve("k"), want)
			checkHeaders(t, "304", serve("k", "If-None-Match", miss.Header().Get("Etag")), want)
			checkHeaders(t, "no-store", serve("k", "Cache-Control", "no-store"), want)
			serve("gone") // fn's not-found, remembered
			checkHeaders(t, "remembered not-found", serve("gone"), map[string]string{"status": "404", "Vary": c.want})
		})
	}
}

// TestVaryCORS puts rs/cors in front of a Public handler: each origin's
// answer carries Vary: Origin besides the handler's names, so that a
// shared cache keeps one answer per origin (before issue 13 the handler
// replaced rs/cors's Vary, and nginx served a.example's answer to
// b.example).
func TestVaryCORS(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)}, Public())
	h := cors.New(cors.Options{AllowedOrigins: []string{"https://a.example", "https://b.example"}}).Handler(fx.h)
	for _, origin := range []string{"https://a.example", "https://b.example", "https://a.example"} {
		req := httptest.NewRequest("GET", "/k", nil)
		req.Header.Set("Origin", origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkHeaders(t, origin, rec, map[string]string{
			"status": "200", "Access-Control-Allow-Origin": origin,
			"Vary": "Origin, Authorization, Cookie",
		})
	}
}

// Test304FwdStatus: a 304 whose answer fn computed for this request says
// fwd-status=200 in Cache-Status (RFC 9211: without it, fwd-status
// defaults to the response's status, claiming that fn answered 304); a 304
// from a hit, and every 200, carry none.
func Test304FwdStatus(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)})
	fx.setBehave(func(context.Context, int64) (int64, error) { return 42, nil })
	etag := fx.get("k").Header().Get("Etag")
	cases := []struct {
		name   string
		forget bool
		hdr    []string
		status string
		code   string
	}{
		{"hit", false, nil, "memo; hit; ttl=60", "304"},
		{"miss", true, nil, "memo; fwd=miss; fwd-status=200; stored", "304"},
		{"no-cache", false, []string{"Cache-Control", "no-cache"}, "memo; fwd=request; fwd-status=200; stored", "304"},
		{"no-store", false, []string{"Cache-Control", "no-store"}, "memo; fwd=request; fwd-status=200", "304"},
		{"credentials", false, []string{"Cookie", "a=1"}, "memo; fwd=bypass; fwd-status=200; detail=credentials", "304"},
		{"miss, no condition", true, []string{"If-None-Match", `"other"`}, "memo; fwd=miss; stored", "200"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.forget {
				if err := fx.f.Forget(context.Background(), "k"); err != nil {
					t.Fatal(err)
				}
			}
			hdr := c.hdr
			if len(hdr) == 0 || hdr[0] != "If-None-Match" {
				hdr = append([]string{"If-None-Match", etag}, hdr...)
			}
			checkHeaders(t, c.name, fx.get("k", hdr...), map[string]string{"status": c.code, "Cache-Status": c.status})
		})
	}
}

// TestCacheStatusOff: CacheStatus(false) drops Cache-Status from every
// answer; with CacheHeader("") too, neither status header is sent.
func TestCacheStatusOff(t *testing.T) {
	errGone := errors.New("gone")
	for _, c := range []struct {
		name    string
		adapter []Option
		xcache  bool
	}{
		{"Cache-Status off", []Option{CacheStatus(false)}, true},
		{"both off", []Option{CacheStatus(false), CacheHeader("")}, false},
		{"off then on", []Option{CacheStatus(false), CacheStatus(true)}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute), memo.NegativeCache(time.Minute, errGone)}, c.adapter...)
			fx.setBehave(func(_ context.Context, n int64) (int64, error) {
				if n == 2 { // "gone", after the miss
					return 0, errGone
				}
				return 42, nil
			})
			miss := fx.get("k")
			fx.get("gone")
			answers := map[string]*httptest.ResponseRecorder{
				"miss":       miss,
				"hit":        fx.get("k"),
				"304":        fx.get("k", "If-None-Match", miss.Header().Get("Etag")),
				"bypass":     fx.get("k", "Authorization", "Bearer x"),
				"remembered": fx.get("gone"),
			}
			for what, rec := range answers {
				_, hasCS := rec.Header()["Cache-Status"]
				_, hasX := rec.Header()["X-Cache"]
				wantCS := c.name == "off then on"
				if hasCS != wantCS || hasX != c.xcache {
					t.Errorf("%s: Cache-Status sent %v, X-Cache sent %v; want %v, %v", what, hasCS, hasX, wantCS, c.xcache)
				}
			}
		})
	}
}
