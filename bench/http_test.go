package bench

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	gincache "github.com/chenyahui/gin-cache"
	"github.com/chenyahui/gin-cache/persist"
	"github.com/gin-gonic/gin"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/httpadapter"
)

// respSink is a ResponseWriter that keeps nothing: each request gets a new
// header map, as net/http gives each response one, so that the handlers'
// own work is timed without the connection's.
type respSink struct {
	h    http.Header
	code int
	n    int
}

func (s *respSink) Header() http.Header         { return s.h }
func (s *respSink) Write(p []byte) (int, error) { s.n += len(p); return len(p), nil }
func (s *respSink) WriteHeader(code int)        { s.code = code }

// httpCases returns the handlers of cmd/httpserver for the hit of id 42:
// the adapter, a handler writing the adapter's headers and body from
// memory, gin-cache and the adapter through gin; and the adapter's ETag.
func httpCases(b *testing.B) (cases []struct {
	name string
	h    http.Handler
}, notmod []struct {
	name string
	h    http.Handler
}, etag string) {
	f := memo.New(FetchUser, memo.Namespace("bench.httptest"), memo.Expire(time.Hour))
	adapter := httpadapter.Handler(f, func(*http.Request) (int64, error) { return 42, nil })
	serve := func(h http.Handler, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/gin/x", nil)
		if len(hdr) == 2 {
			r.Header.Set(hdr[0], hdr[1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	serve(adapter)
	hit := serve(adapter)
	etag = hit.Header().Get("Etag")
	nm := serve(adapter, "If-None-Match", etag)
	if hit.Code != 200 || nm.Code != 304 {
		b.Fatalf("adapter answered %d and %d, want 200 and 304", hit.Code, nm.Code)
	}
	body := hit.Body.Bytes()
	hitHeader, nmHeader := maps.Clone(hit.Header()), maps.Clone(nm.Header())
	fixed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range hitHeader {
			h[k] = v
		}
		w.WriteHeader(200)
		w.Write(body)
	})
	fixed304 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range nmHeader {
			h[k] = v
		}
		w.WriteHeader(304)
	})
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	g.GET("/gin/cache", gincache.CacheByRequestURI(persist.NewMemoryStore(time.Hour), time.Hour), func(c *gin.Context) {
		u, _ := FetchUser(c, 42)
		c.JSON(200, u)
	})
	g.GET("/gin/cache-same", gincache.CacheByRequestURI(persist.NewMemoryStore(time.Hour), time.Hour), func(c *gin.Context) {
		h := c.Writer.Header()
		for k, v := range hitHeader {
			h[k] = v
		}
		c.Status(200)
		c.Writer.Write(body)
	})
	g.GET("/gin/memo", gin.WrapH(adapter))
	for _, p := range []string{"/gin/cache", "/gin/cache-same", "/gin/memo"} {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 {
			b.Fatalf("%s answered %d on its first request", p, rec.Code)
		}
	}
	cases = []struct {
		name string
		h    http.Handler
	}{{"fixed", fixed}, {"adapter", adapter}, {"gin-cache", g}, {"gin-cache-same", g}, {"gin-adapter", g}}
	notmod = []struct {
		name string
		h    http.Handler
	}{{"fixed", fixed304}, {"adapter", adapter}}
	return cases, notmod, etag
}

// BenchmarkHTTPHandler times the handlers of cmd/httpserver in process (no
// connection): hit/fixed is the floor the adapter's hit is compared with
// under wrk, 304/fixed the floor of its 304.
func BenchmarkHTTPHandler(b *testing.B) {
	cases, notmod, etag := httpCases(b)
	paths := map[string]string{"gin-cache": "/gin/cache", "gin-cache-same": "/gin/cache-same", "gin-adapter": "/gin/memo"}
	run := func(b *testing.B, h http.Handler, path string, want int, hdr ...string) {
		r := httptest.NewRequest("GET", path, nil)
		if len(hdr) == 2 {
			r.Header.Set(hdr[0], hdr[1])
		}
		s := &respSink{}
		b.ReportAllocs()
		for b.Loop() {
			s.h = make(http.Header)
			h.ServeHTTP(s, r)
		}
		if s.code != want && !(s.code == 0 && want == 200) {
			b.Fatalf("status %d, want %d", s.code, want)
		}
	}
	for _, c := range cases {
		b.Run("hit/"+c.name, func(b *testing.B) {
			p := paths[c.name]
			if p == "" {
				p = "/x"
			}
			run(b, c.h, p, 200)
		})
	}
	for _, c := range notmod {
		b.Run("304/"+c.name, func(b *testing.B) { run(b, c.h, "/x", 304, "If-None-Match", etag) })
	}
}
