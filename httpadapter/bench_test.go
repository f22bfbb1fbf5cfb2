package httpadapter

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

type benchUser struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// benchHandlers returns the adapter serving a stored benchUser (always a
// hit once warmed), a plain handler writing the same body with the same
// Content-Type and Content-Length, and the adapter's ETag.
func benchHandlers(b *testing.B) (adapter, fixed http.Handler, etag string) {
	b.Helper()
	f := memo.New(func(ctx context.Context, id int64) (benchUser, error) {
		return benchUser{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
	}, memo.Namespace("bench.users"), memo.WithBackend(memory.New()), memo.Expire(time.Hour))
	adapter = Handler(f, func(*http.Request) (int64, error) { return 7, nil })
	rec := httptest.NewRecorder()
	adapter.ServeHTTP(rec, httptest.NewRequest("GET", "/users/7", nil))
	body := rec.Body.Bytes()
	etag = rec.Header().Get("Etag")
	ct, cl := []string{"application/json"}, []string{strconv.Itoa(len(body))}
	fixed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = ct
		h["Content-Length"] = cl
		w.WriteHeader(200)
		w.Write(body)
	})
	return adapter, fixed, etag
}

// discard is a minimal ResponseWriter, to time the handler alone.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func runInProcess(b *testing.B, h http.Handler, req *http.Request, want int, recorder bool) {
	b.ReportAllocs()
	d := &discard{h: http.Header{}}
	for b.Loop() {
		if recorder {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			d.code = rec.Code
		} else {
			clear(d.h)
			h.ServeHTTP(d, req)
		}
		if d.code != want {
			b.Fatalf("status = %v, want %v", d.code, want)
		}
	}
}

func runLoopback(b *testing.B, h http.Handler, hdr http.Header, want int) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := srv.Client()
	req, _ := http.NewRequest("GET", srv.URL+"/users/7", nil)
	req.Header = hdr
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			b.Fatalf("status = %v, want %v", res.StatusCode, want)
		}
	}
}

// BenchmarkHit serves a cache hit through the adapter, side by side with a
// handler writing the same fixed bytes: in process (a bare ResponseWriter,
// and httptest.ResponseRecorder) and over a real loopback connection.
func BenchmarkHit(b *testing.B) {
	adapter, fixed, _ := benchHandlers(b)
	req := httptest.NewRequest("GET", "/users/7", nil)
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"adapter", adapter}, {"fixed", fixed}} {
		b.Run(h.name+"/discard", func(b *testing.B) { runInProcess(b, h.h, req, 200, false) })
		b.Run(h.name+"/recorder", func(b *testing.B) { runInProcess(b, h.h, req, 200, true) })
		b.Run(h.name+"/loopback", func(b *testing.B) { runLoopback(b, h.h, http.Header{}, 200) })
	}
}

// Benchmark304 answers a conditional request whose If-None-Match matches.
func Benchmark304(b *testing.B) {
	adapter, _, etag := benchHandlers(b)
	req := httptest.NewRequest("GET", "/users/7", nil)
	req.Header.Set("If-None-Match", `"other", `+etag)
	b.Run("discard", func(b *testing.B) { runInProcess(b, adapter, req, 304, false) })
	b.Run("recorder", func(b *testing.B) { runInProcess(b, adapter, req, 304, true) })
	b.Run("loopback", func(b *testing.B) { runLoopback(b, adapter, req.Header, 304) })
}
