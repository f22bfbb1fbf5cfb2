package httpadapter

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// TestPreconditions: If-Match and If-Unmodified-Since on GET and HEAD,
// evaluated with If-None-Match and If-Modified-Since in the order of RFC
// 9110 section 13.2.2: If-Match; If-Unmodified-Since only without
// If-Match; then If-None-Match; If-Modified-Since only without it. A
// failed If-Match or If-Unmodified-Since is a 412; before issue 13 both
// were ignored.
func TestPreconditions(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)})
	fx.setBehave(func(context.Context, int64) (int64, error) { return 42, nil })
	stored := fx.clk.Now()
	etag := fx.get("k").Header().Get("Etag")
	fx.clk.Advance(10 * time.Second)
	date := func(d time.Duration) string { return stored.Add(d).UTC().Format(http.TimeFormat) }
	cases := []struct {
		name   string
		method string
		hdr    []string
		status int
	}{
		{"If-Match the ETag", "GET", []string{"If-Match", etag}, 200},
		{"If-Match star", "GET", []string{"If-Match", "*"}, 200},
		{"If-Match in a list", "GET", []string{"If-Match", `"a", ` + etag}, 200},
		{"If-Match on a second line", "GET", []string{"If-Match", `"a"`, "If-Match", etag}, 200},
		{"If-Match another", "GET", []string{"If-Match", `"a"`}, 412},
		{"If-Match weak: strong comparison", "GET", []string{"If-Match", "W/" + etag}, 412},
		{"If-Match malformed", "GET", []string{"If-Match", "a, " + etag}, 412},
		{"If-Match another, HEAD", "HEAD", []string{"If-Match", `"a"`}, 412},
		{"If-Match fails before If-None-Match", "GET", []string{"If-Match", `"a"`, "If-None-Match", etag}, 412},
		{"If-Match holds, If-None-Match matches", "GET", []string{"If-Match", etag, "If-None-Match", etag}, 304},
		{"If-Match holds, If-Unmodified-Since ignored", "GET", []string{"If-Match", etag, "If-Unmodified-Since", date(-time.Hour)}, 200},
		{"If-Unmodified-Since the Last-Modified", "GET", []string{"If-Unmodified-Since", date(0)}, 200},
		{"If-Unmodified-Since later", "GET", []string{"If-Unmodified-Since", date(time.Hour)}, 200},
		{"If-Unmodified-Since earlier", "GET", []string{"If-Unmodified-Since", date(-time.Second)}, 412},
		{"If-Unmodified-Since earlier, HEAD", "HEAD", []string{"If-Unmodified-Since", date(-time.Second)}, 412},
		{"If-Unmodified-Since not a date", "GET", []string{"If-Unmodified-Since", "yesterday"}, 200},
		{"If-Unmodified-Since on two lines", "GET", []string{"If-Unmodified-Since", date(-time.Hour), "If-Unmodified-Since", date(-time.Hour)}, 200},
		{"If-Unmodified-Since fails before If-None-Match", "GET", []string{"If-Unmodified-Since", date(-time.Hour), "If-None-Match", etag}, 412},
		{"If-Unmodified-Since holds, If-None-Match matches", "GET", []string{"If-Unmodified-Since", date(0), "If-None-Match", etag}, 304},
		{"If-Unmodified-Since holds, If-Modified-Since matches", "GET", []string{"If-Unmodified-Since", date(0), "If-Modified-Since", date(0)}, 304},
		{"no-store: no Last-Modified, If-Unmodified-Since ignored", "GET", []string{"Cache-Control", "no-store", "If-Unmodified-Since", date(-time.Hour)}, 200},
		{"no-store: If-Match another", "GET", []string{"Cache-Control", "no-store", "If-Match", `"a"`}, 412},
		{"no-store: If-Match the ETag", "GET", []string{"Cache-Control", "no-store", "If-Match", etag}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := fx.serve(c.method, "k", c.hdr...)
			if rec.Code != c.status {
				t.Fatalf("%s with %q: status = %d, want %d", c.method, c.hdr, rec.Code, c.status)
			}
			if c.status != 412 {
				return
			}
			body := "Precondition Failed\n"
			if c.method == "HEAD" {
				body = rec.Body.String() // the recorder keeps a HEAD body; net/http drops it
			}
			checkHeaders(t, "412", rec, map[string]string{
				"body": body, "Cache-Control": "no-store", "Etag": none, "Last-Modified": none,
				"Content-Type": "text/plain; charset=utf-8",
			})
		})
	}
	if n := fx.calls.Load(); n != 4 { // the miss and the three no-store requests
		t.Errorf("fn calls = %d, want 4", n)
	}
}

// TestPreconditionsOnErrors: a request whose answer would be an error
// gets that error whatever its preconditions (RFC 9110 section 13.2.1).
func TestPreconditionsOnErrors(t *testing.T) {
	errGone := Error(http.StatusNotFound, "gone")
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute), memo.NegativeCache(time.Minute, errGone)})
	fx.setBehave(func(context.Context, int64) (int64, error) { return 0, errGone })
	for i := range 2 { // fn's error, then the remembered one
		if rec := fx.get("k", "If-Match", `"a"`); rec.Code != 404 {
			t.Errorf("answer %d: status = %d, want 404", i, rec.Code)
		}
	}
}
