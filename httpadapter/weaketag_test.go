package httpadapter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/httpadapter"
)

// TestWeakETag: under WeakETag the ETag is W/"..." on a miss, a hit and a
// 304; If-None-Match with either form revalidates (304); If-Match matches
// only "*" (its comparison is strong). It fails if the strong tag is sent,
// or if a weak tag satisfies If-Match.
func TestWeakETag(t *testing.T) {
	f := memo.New(func(_ context.Context, id int64) (string, error) { return "hello", nil }, memo.Namespace("weak-etag"))
	h := httpadapter.Handler(f, httpadapter.PathInt64("id"), httpadapter.WeakETag())
	mux := http.NewServeMux()
	mux.Handle("GET /w/{id}", h)
	do := func(hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/w/1", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	first := do()
	tag := first.Header().Get("ETag")
	if first.Code != 200 || len(tag) < 4 || tag[:3] != `W/"` {
		t.Fatalf("GET = %d with ETag %q, want 200 and a weak tag", first.Code, tag)
	}
	if hit := do(); hit.Header().Get("ETag") != tag {
		t.Errorf("hit ETag = %q, want %q", hit.Header().Get("ETag"), tag)
	}
	for _, c := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"If-None-Match weak", []string{"If-None-Match", tag}, http.StatusNotModified},
		{"If-None-Match strong form", []string{"If-None-Match", tag[2:]}, http.StatusNotModified},
		{"If-Match weak", []string{"If-Match", tag}, http.StatusPreconditionFailed},
		{"If-Match strong form", []string{"If-Match", tag[2:]}, http.StatusPreconditionFailed},
		{"If-Match *", []string{"If-Match", "*"}, http.StatusOK},
	} {
		rec := do(c.hdr...)
		if rec.Code != c.want {
			t.Errorf("%s: GET = %d, want %d", c.name, rec.Code, c.want)
		}
		if rec.Code != http.StatusPreconditionFailed && rec.Header().Get("ETag") != tag {
			t.Errorf("%s: ETag = %q, want %q", c.name, rec.Header().Get("ETag"), tag)
		}
	}
}
