package httpadapter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// BenchmarkHandlerBodies serves hits of the issue 13 body shapes in
// process: an HTML string with characters JSON escapes (decoded once per
// entry, then served from the handler's render cache), a string with none
// (served from the entry as is), a []byte, and a Responder (201 with a
// Location), beside the plain JSON struct of BenchmarkHit.
func BenchmarkHandlerBodies(b *testing.B) {
	const html = `<p class="note">Fish &amp; chips <b>£3</b></p>`
	run := func(b *testing.B, h http.Handler, want int) {
		req := httptest.NewRequest("GET", "/", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req) // the miss
		runInProcess(b, h, req, want, false)
	}
	mk := func(name string) []memo.Option {
		return []memo.Option{memo.Namespace("bench.bodies." + name), memo.WithBackend(memory.New()), memo.Expire(time.Hour)}
	}
	decode := func(*http.Request) (string, error) { return "k", nil }
	b.Run("html", func(b *testing.B) {
		f := memo.New(func(context.Context, string) (string, error) { return html, nil }, mk("html")...)
		run(b, Handler(f, decode, ContentType("text/html; charset=utf-8")), 200)
	})
	b.Run("plain", func(b *testing.B) {
		f := memo.New(func(context.Context, string) (string, error) { return "just words, no escapes", nil }, mk("plain")...)
		run(b, Handler(f, decode, ContentType("text/plain; charset=utf-8")), 200)
	})
	b.Run("bytes", func(b *testing.B) {
		f := memo.New(func(context.Context, string) ([]byte, error) { return []byte(html), nil }, mk("bytes")...)
		run(b, Handler(f, decode, ContentType("text/html; charset=utf-8")), 200)
	})
	b.Run("responder", func(b *testing.B) {
		f := memo.New(func(context.Context, string) (createdOrder, error) { return createdOrder{ID: 9}, nil }, mk("responder")...)
		run(b, Handler(f, decode), 201)
	})
	b.Run("json", func(b *testing.B) {
		f := memo.New(func(context.Context, string) (benchUser, error) { return benchUser{ID: 7, Name: "user-7"}, nil }, mk("json")...)
		run(b, Handler(f, decode), 200)
	})
}
