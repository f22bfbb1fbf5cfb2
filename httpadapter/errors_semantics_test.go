package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// Issue 13, errors: fn's error can carry a status and a message for the
// client (StatusError, or any error with HTTPStatus and HTTPDetail);
// ErrorBody renders error answers, JSONError in FastAPI's form; the
// default stays the status text, never the text of fn's other errors.

// tenantError is a user's own error type with a status and a detail.
type tenantError struct{ tenant string }

func (e tenantError) Error() string      { return "tenant " + e.tenant + " suspended in billing db" }
func (e tenantError) HTTPStatus() int    { return http.StatusForbidden }
func (e tenantError) HTTPDetail() string { return "tenant suspended" }

var errCause = errors.New("pq: deadlock detected on relation orders")

func TestErrorBodies(t *testing.T) {
	fn := func(ctx context.Context, id string) (int, error) {
		switch id {
		case "detail":
			return 0, Error(http.StatusNotFound, "no user 7")
		case "wrapped":
			return 0, fmt.Errorf("lookup: %w", Error(http.StatusConflict, "order locked"))
		case "cause":
			return 0, &StatusError{Status: http.StatusServiceUnavailable, Detail: "try again later", Err: errCause}
		case "own":
			return 0, tenantError{"acme"}
		case "plain":
			return 0, errCause
		case "control":
			return 0, Error(http.StatusBadRequest, "bad\nline")
		}
		return 1, nil
	}
	decode := func(r *http.Request) (string, error) {
		if id := r.PathValue("id"); id != "bad" {
			return id, nil
		}
		return "", errors.New(`id must be a number, got "bad"`)
	}
	cases := []struct {
		id       string
		status   int
		text     string // default renderer
		json     string // JSONError
		loggedAs error  // what ErrorLog gets, nil: not called
	}{
		{"detail", 404, "Not Found: no user 7\n", `{"detail":"no user 7"}` + "\n", nil},
		{"wrapped", 409, "Conflict: order locked\n", `{"detail":"order locked"}` + "\n", nil},
		{"cause", 503, "Service Unavailable: try again later\n", `{"detail":"try again later"}` + "\n", errCause},
		{"own", 403, "Forbidden: tenant suspended\n", `{"detail":"tenant suspended"}` + "\n", nil},
		{"plain", 500, "Internal Server Error\n", `{"detail":"Internal Server Error"}` + "\n", errCause},
		{"control", 400, "Bad Request: bad line\n", `{"detail":"bad line"}` + "\n", nil},
		{"bad", 400, "Bad Request: id must be a number, got \"bad\"\n", `{"detail":"id must be a number, got \"bad\""}` + "\n", nil},
	}
	for _, renderer := range []string{"text", "json"} {
		for _, c := range cases {
			t.Run(renderer+"/"+c.id, func(t *testing.T) {
				var mu sync.Mutex
				var logged []error
				opts := []Option{ErrorLog(func(_ *http.Request, err error) { mu.Lock(); logged = append(logged, err); mu.Unlock() })}
				want, ctype := c.text, "text/plain; charset=utf-8"
				if renderer == "json" {
					opts = append(opts, ErrorBody(JSONError))
					want, ctype = c.json, "application/json"
				}
				f := memo.New(fn, memo.Namespace("test.errbodies."+renderer+"."+c.id), memo.WithBackend(memory.New()))
				mux := http.NewServeMux()
				mux.Handle("/e/{id}", Handler(f, decode, opts...))
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest("GET", "/e/"+c.id, nil))
				checkHeaders(t, c.id, rec, map[string]string{
					"status": fmt.Sprint(c.status), "body": want, "Content-Type": ctype,
					"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
				})
				if strings.Contains(rec.Body.String(), "deadlock") {
					t.Errorf("body %q shows fn's error text", rec.Body.String())
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case c.loggedAs == nil && len(logged) != 0:
					t.Errorf("ErrorLog got %v, want no call", logged)
				case c.loggedAs != nil && (len(logged) != 1 || !errors.Is(logged[0], c.loggedAs)):
					t.Errorf("ErrorLog got %v, want one error matching %v", logged, c.loggedAs)
				}
			})
		}
	}
}

// TestErrorBodyRenderer: a renderer of one's own gets the status, the
// client message and the error answered.
func TestErrorBodyRenderer(t *testing.T) {
	var got *StatusError
	f := memo.New(func(ctx context.Context, id string) (int, error) {
		return 0, fmt.Errorf("wrapping: %w", tenantError{"acme"})
	}, memo.Namespace("test.errrenderer"), memo.WithBackend(memory.New()))
	h := Handler(f, func(*http.Request) (string, error) { return "k", nil }, ErrorBody(func(w http.ResponseWriter, r *http.Request, e *StatusError) {
		got = e
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(e.Status)
		fmt.Fprintf(w, `{"status":%d,"title":%q}`, e.Status, e.Detail)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	checkHeaders(t, "answer", rec, map[string]string{
		"status": "403", "body": `{"status":403,"title":"tenant suspended"}`,
		"Content-Type": "application/problem+json", "Cache-Control": "no-store",
	})
	var te tenantError
	if got == nil || got.Status != 403 || got.Detail != "tenant suspended" || !errors.As(got.Err, &te) {
		t.Errorf("renderer got %+v, want status 403, detail tenant suspended, and fn's error", got)
	}
}

// TestRememberedStatusError: a StatusError as NegativeCache's sentinel
// gives fn's not-found and the remembered one, answered from the cache,
// the same status and detail.
func TestRememberedStatusError(t *testing.T) {
	errGone := Error(http.StatusGone, "order deleted")
	for _, renderer := range []string{"text", "json"} {
		t.Run(renderer, func(t *testing.T) {
			var adapter []Option
			body := "Gone: order deleted\n"
			if renderer == "json" {
				adapter = append(adapter, ErrorBody(JSONError))
				body = `{"detail":"order deleted"}` + "\n"
			}
			fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute), memo.NegativeCache(30*time.Second, errGone)}, adapter...)
			fx.setBehave(func(context.Context, int64) (int64, error) { return 0, fmt.Errorf("orders: %w", errGone) })
			checkHeaders(t, "fn's not-found", fx.get("k"), map[string]string{
				"status": "410", "body": body, "Cache-Control": "no-store", "Cache-Status": none,
			})
			fx.clk.Advance(10 * time.Second)
			checkHeaders(t, "remembered", fx.get("k"), map[string]string{
				"status": "410", "body": body, "Cache-Control": "private, max-age=20",
				"Cache-Status": "memo; hit; ttl=20", "X-Cache": "HIT",
			})
			if n := fx.calls.Load(); n != 1 {
				t.Errorf("fn calls = %d, want 1", n)
			}
		})
	}
}
