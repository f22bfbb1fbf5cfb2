package httpadapter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/klauspost/compress/gzhttp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// gzipServer serves a 2 kB memoized answer at /v/{id} through wrap (a gzip
// middleware) around the handler, built with opts.
func gzipServer(t *testing.T, wrap func(http.Handler) http.Handler, opts ...Option) (*httptest.Server, *http.Client) {
	t.Helper()
	f := memo.New(func(ctx context.Context, id string) (string, error) { return strings.Repeat("memo ", 400) + id, nil },
		memo.Namespace("test."+t.Name()), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
	h := Handler(f, PathString("id"), opts...)
	mux := http.NewServeMux()
	mux.Handle("GET /v/{id}", wrap(h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	// A client that shows the bytes as sent, compressed or not.
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(c.CloseIdleConnections)
	return srv, c
}

// mustWrapper(t)(gzhttp.NewWrapper(...)) is the wrapper, or a fatal error.
func mustWrapper(t *testing.T) func(func(http.Handler) http.HandlerFunc, error) func(http.Handler) http.Handler {
	return func(w func(http.Handler) http.HandlerFunc, err error) func(http.Handler) http.Handler {
		if err != nil {
			t.Fatal(err)
		}
		return func(h http.Handler) http.Handler { return w(h) }
	}
}

// isStrong reports whether an ETag is a strong entity-tag.
func isStrong(etag string) bool { return strings.HasPrefix(etag, `"`) }

// TestGzipETags: with each configuration that docs/http.md gives
// (WeakETag, or gzhttp's DropETag), no strong
// ETag names two bodies, both encodings revalidate to a 304, and answers
// list Accept-Encoding in Vary (gzhttp: in one line with the handler's
// names). The default configurations are there to show that the check
// fails without a fix.
func TestGzipETags(t *testing.T) {
	cases := []struct {
		name     string
		wrap     func(http.Handler) http.Handler
		opts     []Option
		hazard   bool // the default: one strong ETag on two bodies
		byIMS    bool // the gzip answer revalidates by If-Modified-Since only
		etagless bool // the gzip answer has no ETag
		// chi's Compress adds its own Vary line, and only when it
		// compresses: the identity answer lists no Accept-Encoding.
		chi bool
	}{
		{name: "gzhttp defaults", wrap: mustWrapper(t)(gzhttp.NewWrapper()), hazard: true},
		{name: "WeakETag", wrap: mustWrapper(t)(gzhttp.NewWrapper()), opts: []Option{WeakETag()}},
		{name: "chi Compress", wrap: middleware.Compress(5), hazard: true, chi: true},
		{name: "chi Compress, WeakETag", wrap: middleware.Compress(5), opts: []Option{WeakETag()}, chi: true},
		{name: "gzhttp DropETag", wrap: mustWrapper(t)(gzhttp.NewWrapper(gzhttp.DropETag())), byIMS: true, etagless: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, client := gzipServer(t, c.wrap, c.opts...)
			answers := map[string]response{}
			for _, ae := range []string{"identity", "gzip"} {
				r := doReq(t, client, "GET", srv.URL+"/v/1", "Accept-Encoding", ae)
				if r.status != 200 {
					t.Fatalf("GET (Accept-Encoding: %s) = %d", ae, r.status)
				}
				lines := r.header.Values("Vary")
				if v := strings.Join(lines, ", "); (ae == "gzip" || !c.chi) && !strings.Contains(v, "Accept-Encoding") {
					t.Errorf("GET (Accept-Encoding: %s): Vary = %q, want Accept-Encoding listed", ae, v)
				}
				if !c.chi && len(lines) != 1 {
					t.Errorf("GET (Accept-Encoding: %s): Vary lines %q, want one (nginx reads only the last)", ae, lines)
				}
				answers[ae] = r
			}
			ident, gz := answers["identity"], answers["gzip"]
			if gz.header.Get("Content-Encoding") != "gzip" || gz.body == ident.body {
				t.Fatalf("gzip answer: Content-Encoding %q, %d B against %d B: not compressed", gz.header.Get("Content-Encoding"), len(gz.body), len(ident.body))
			}
			ie, ge := ident.header.Get("Etag"), gz.header.Get("Etag")
			shared := ie != "" && ie == ge && isStrong(ie)
			if shared != c.hazard {
				t.Errorf("ETags %q (identity) and %q (gzip): one strong ETag on two bodies = %v, want %v", ie, ge, shared, c.hazard)
			}
			if c.hazard {
				return
			}
			if (ge == "") != c.etagless {
				t.Errorf("gzip answer's ETag = %q, want none: %v", ge, c.etagless)
			}
			for ae, r := range answers {
				cond := []string{"If-None-Match", r.header.Get("Etag")}
				if ae == "gzip" && c.byIMS {
					cond = []string{"If-Modified-Since", r.header.Get("Last-Modified")}
				}
				re := doReq(t, client, "GET", srv.URL+"/v/1", "Accept-Encoding", ae, cond[0], cond[1])
				if re.status != http.StatusNotModified {
					t.Errorf("revalidation (Accept-Encoding: %s, %s: %s) = %d, want 304", ae, cond[0], cond[1], re.status)
				}
			}
		})
	}
}
