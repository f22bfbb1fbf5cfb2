package httpadapter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// Issue 13, bodies: a string or []byte result served as is with the
// handler's ContentType, ETag and all; a result type implementing
// Responder sets its status and header fields without losing caching.

type htmlFragment string

// serveRaw serves v from a fresh Func under ContentType(ct) and returns
// the miss, the hit, a 304 to the hit's ETag, a HEAD and a POST.
func serveRaw[R any](t *testing.T, v R, ct string, opts ...memo.Option) map[string]*httptest.ResponseRecorder {
	t.Helper()
	var calls atomic.Int64
	f := memo.New(func(ctx context.Context, id string) (R, error) { calls.Add(1); return v, nil },
		append([]memo.Option{memo.Namespace(fmt.Sprintf("test.raw.%s.%d", t.Name(), rawSeq.Add(1))), memo.Expire(time.Minute)}, opts...)...)
	var adapter []Option
	if ct != "" {
		adapter = append(adapter, ContentType(ct))
	}
	h := Handler(f, func(*http.Request) (string, error) { return "k", nil }, adapter...)
	serve := func(method string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	out := map[string]*httptest.ResponseRecorder{"miss": serve("GET")}
	out["hit"] = serve("GET")
	out["304"] = serve("GET", "If-None-Match", out["hit"].Header().Get("Etag"))
	out["HEAD"] = serve("HEAD")
	out["POST"] = serve("POST")
	if n := calls.Load(); n != 2 { // the miss and the POST
		t.Errorf("fn calls = %d, want 2", n)
	}
	return out
}

var rawSeq atomic.Int64

// TestRawBodies: under ContentType, string and []byte results (and types
// defined on them) are the body byte for byte, on every codec and tier,
// with the same ETag on a miss and a hit, a 304 to it, and HEAD's
// Content-Length; the ETag is the hash of the JSON encoding, so it is the
// same whichever codec stored the value. Without ContentType a string is
// JSON, as before; a struct under ContentType is JSON with that type.
func TestRawBodies(t *testing.T) {
	const html = `<p class="note">Fish & chips <b>£3</b></p>`
	const csv = "id,name\n1,Ada\n"
	tiers := []struct {
		name string
		opts []memo.Option
	}{
		{"local", nil},
		{"memory", []memo.Option{memo.WithBackend(memory.New())}},
		{"memory msgpack", []memo.Option{memo.WithBackend(memory.New()), memo.WithCodec(memo.Msgpack)}},
	}
	type point struct{ X, Y int }
	for _, tier := range tiers {
		cases := []struct {
			name, ct, body string
			answers        map[string]*httptest.ResponseRecorder
			etag           string // the ETag the JSON codec's payload has
		}{
			{"string with escapes", "text/html; charset=utf-8", html, serveRaw(t, html, "text/html; charset=utf-8", tier.opts...), etagOf([]byte(`"\u003cp class=\"note\"\u003eFish \u0026 chips \u003cb\u003e£3\u003c/b\u003e\u003c/p\u003e"`))},
			{"plain string", "text/plain; charset=utf-8", "hello, world", serveRaw(t, "hello, world", "text/plain; charset=utf-8", tier.opts...), etagOf([]byte(`"hello, world"`))},
			{"[]byte", "text/csv", csv, serveRaw(t, []byte(csv), "text/csv", tier.opts...), etagOf([]byte(`"aWQsbmFtZQoxLEFkYQo="`))},
			{"defined on string", "text/html", "<br>", serveRaw(t, htmlFragment("<br>"), "text/html", tier.opts...), etagOf([]byte(`"\u003cbr\u003e"`))},
			{"string without ContentType", "application/json", `"\u003cbr\u003e"`, serveRaw(t, "<br>", "", tier.opts...), etagOf([]byte(`"\u003cbr\u003e"`))},
			{"struct with ContentType", "application/vnd.api+json", `{"X":1,"Y":2}`, serveRaw(t, point{1, 2}, "application/vnd.api+json", tier.opts...), etagOf([]byte(`{"X":1,"Y":2}`))},
		}
		for _, c := range cases {
			t.Run(tier.name+"/"+c.name, func(t *testing.T) {
				a := c.answers
				for _, k := range []string{"miss", "hit"} {
					checkHeaders(t, k, a[k], map[string]string{
						"status": "200", "body": c.body, "Content-Type": c.ct, "Etag": c.etag,
						"Content-Length": strconv.Itoa(len(c.body)),
					})
				}
				checkHeaders(t, "304", a["304"], map[string]string{"status": "304", "body": "", "Etag": c.etag})
				checkHeaders(t, "HEAD", a["HEAD"], map[string]string{
					"status": "200", "Content-Type": c.ct, "Etag": c.etag, "Content-Length": strconv.Itoa(len(c.body)),
				})
				checkHeaders(t, "POST", a["POST"], map[string]string{"status": "200", "body": c.body, "Content-Type": c.ct, "Etag": none})
			})
		}
	}
}

var responds atomic.Int64

// createdOrder is a result that answers 201 with a Location.
type createdOrder struct {
	ID int `json:"id"`
}

func (c createdOrder) Respond(h http.Header) int {
	responds.Add(1)
	h.Set("Location", "/orders/"+strconv.Itoa(c.ID))
	h.Add("Vary", "Accept-Language")
	h.Set("Content-Type", "application/hal+json")
	return http.StatusCreated
}

// langPage has Respond on its pointer and keeps the default status.
type langPage struct {
	Lang string `json:"lang"`
}

func (p *langPage) Respond(h http.Header) int {
	h.Set("Content-Language", p.Lang)
	return 0
}

type noContentResult struct{ N int }

func (noContentResult) Respond(http.Header) int { return http.StatusNoContent }

type cookieResult struct{ N int }

func (cookieResult) Respond(h http.Header) int { h.Set("Set-Cookie", "s=1"); return 200 }

// TestResponder: a result's Respond sets the status and header fields of
// every answer of its entry (miss, hit, 304, HEAD, other methods) and runs
// once per entry; the handler's own fields win; a status outside 2xx with
// a body, or a Set-Cookie, is a logged 500.
func TestResponder(t *testing.T) {
	t.Run("201 with Location", func(t *testing.T) {
		responds.Store(0)
		a := serveRaw(t, createdOrder{ID: 9}, "", memo.WithBackend(memory.New()))
		for _, k := range []string{"miss", "hit", "HEAD", "POST"} {
			checkHeaders(t, k, a[k], map[string]string{
				"status": "201", "Location": "/orders/9", "Content-Type": "application/hal+json",
			})
		}
		body := `{"id":9}`
		for _, k := range []string{"miss", "hit"} {
			checkHeaders(t, k, a[k], map[string]string{
				"body": body, "Etag": etagOf([]byte(body)), "Vary": "Accept-Language, Authorization, Cookie",
			})
		}
		checkHeaders(t, "304", a["304"], map[string]string{"status": "304", "Location": "/orders/9", "Etag": etagOf([]byte(body))})
		// One entry, served to the hit, the 304, HEAD and the POST (whose
		// answer has the same payload).
		if n := responds.Load(); n != 1 {
			t.Errorf("Respond calls = %d, want 1", n)
		}
	})
	t.Run("304 on a miss", func(t *testing.T) {
		f := memo.New(func(context.Context, string) (createdOrder, error) { return createdOrder{ID: 9}, nil },
			memo.Namespace("test.respond.304miss"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("If-None-Match", etagOf([]byte(`{"id":9}`)))
		rec := httptest.NewRecorder()
		Handler(f, func(*http.Request) (string, error) { return "k", nil }).ServeHTTP(rec, req)
		checkHeaders(t, "304", rec, map[string]string{
			"status": "304", "Location": "/orders/9", "Cache-Status": "memo; fwd=miss; fwd-status=201; stored",
		})
	})
	t.Run("pointer receiver, default status", func(t *testing.T) {
		a := serveRaw(t, langPage{Lang: "fr"}, "", memo.WithBackend(memory.New()))
		for _, k := range []string{"miss", "hit"} {
			checkHeaders(t, k, a[k], map[string]string{"status": "200", "Content-Language": "fr", "Content-Type": "application/json"})
		}
	})
	for _, c := range []struct {
		name string
		h    func(t *testing.T, log func(*http.Request, error)) http.Handler
	}{
		{"204", func(t *testing.T, log func(*http.Request, error)) http.Handler {
			f := memo.New(func(context.Context, string) (noContentResult, error) { return noContentResult{}, nil }, memo.Namespace("test.respond.204"), memo.WithBackend(memory.New()))
			return Handler(f, func(*http.Request) (string, error) { return "k", nil }, ErrorLog(log))
		}},
		{"Set-Cookie", func(t *testing.T, log func(*http.Request, error)) http.Handler {
			f := memo.New(func(context.Context, string) (cookieResult, error) { return cookieResult{}, nil }, memo.Namespace("test.respond.cookie"), memo.WithBackend(memory.New()))
			return Handler(f, func(*http.Request) (string, error) { return "k", nil }, ErrorLog(log))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logged atomic.Int64
			h := c.h(t, func(*http.Request, error) { logged.Add(1) })
			for i := range 2 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				checkHeaders(t, fmt.Sprint("answer ", i), rec, map[string]string{"status": "500", "Set-Cookie": none})
			}
			if n := logged.Load(); n != 2 {
				t.Errorf("ErrorLog calls = %d, want 2", n)
			}
		})
	}
}
