package httpadapter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// A hit reuses the header values of the previous hit on the same entry
// (the handler's hotCache); these tests show that what it reuses is always
// what it would have built: the clock's whole seconds, the entry, and the
// response's own Set-Cookie all still count.

// TestHotValuesFollowTheClock: hits a fraction of a second apart say the
// whole seconds left at each one's own time, as the clock crosses second
// boundaries of the remaining lifetime.
func TestHotValuesFollowTheClock(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(10 * time.Second)})
			start := fx.clk.Now()
			fx.get("k") // the miss
			fresh := start.Add(10 * time.Second)
			for _, step := range []time.Duration{300, 300, 300, 300, 50, 950, 1, 998, 1, 2500, 3000, 500} {
				fx.clk.Advance(step * time.Millisecond)
				left := int64(fresh.Sub(fx.clk.Now()) / time.Second)
				what := fmt.Sprintf("hit at +%v", fx.clk.Now().Sub(start))
				checkHeaders(t, what, fx.get("k"), map[string]string{
					"status": "200", "Cache-Control": "private, max-age=" + strconv.FormatInt(left, 10),
					"Cache-Status":  "memo; hit; ttl=" + strconv.FormatInt(left, 10),
					"Last-Modified": start.UTC().Format(http.TimeFormat), "body": "1",
				})
			}
		})
	}
}

// TestHotValuesPerResponse: under Public, a response on which a middleware
// set a cookie is private, the next one without is public again, and so
// on, on the same entry in the same second.
func TestHotValuesPerResponse(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Minute)}, Public())
	fx.get("k")
	cookie := false
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cookie {
			w.Header().Set("Set-Cookie", "session=abc")
		}
		fx.h.ServeHTTP(w, r)
	})
	for i, c := range []bool{false, true, true, false, true, false, false} {
		cookie = c
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/k", nil))
		want := "public, max-age=60"
		if c {
			want = "private, max-age=60"
		}
		checkHeaders(t, fmt.Sprintf("request %d (cookie %v)", i, c), rec, map[string]string{"Cache-Control": want, "X-Cache": "HIT"})
	}
}

// TestHotValuesNewEntrySameBody: an entry recomputed to the same value
// has the same ETag but another Last-Modified and lifetime; the hits after
// it say so.
func TestHotValuesNewEntrySameBody(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Minute)})
			fx.setBehave(func(context.Context, int64) (int64, error) { return 7, nil })
			first := fx.get("k")
			fx.get("k")
			fx.clk.Advance(5 * time.Second)
			fx.f.Forget(context.Background(), "k")
			miss := fx.get("k")
			if miss.Header().Get("Etag") != first.Header().Get("Etag") {
				t.Fatalf("ETag %q after recomputing the same value, want %q", miss.Header().Get("Etag"), first.Header().Get("Etag"))
			}
			fx.clk.Advance(time.Second)
			checkHeaders(t, "hit on the new entry", fx.get("k"), map[string]string{
				"Cache-Control": "private, max-age=59", "Cache-Status": "memo; hit; ttl=59",
				"Last-Modified": fx.clk.Now().Add(-time.Second).UTC().Format(http.TimeFormat),
			})
		})
	}
}

// TestHotValuesManyEntries: with far more entries than slots, every hit
// carries its own entry's ETag and Content-Length.
func TestHotValuesManyEntries(t *testing.T) {
	fx := newFreshFixture(t, nil, []memo.Option{memo.Expire(time.Hour)})
	const n = 4 * hotSlots
	tags := make(map[string]string, n)
	for i := range n {
		k := strconv.Itoa(i)
		tags[k] = fx.get(k).Header().Get("Etag")
	}
	for round := range 2 {
		for i := range n {
			k := strconv.Itoa(i)
			rec := fx.get(k)
			body := rec.Body.String()
			checkHeaders(t, fmt.Sprintf("round %d, hit on %s", round, k), rec, map[string]string{
				"Etag": tags[k], "Content-Length": strconv.Itoa(len(body)), "X-Cache": "HIT",
			})
			if rec := fx.get(k, "If-None-Match", tags[k]); rec.Code != http.StatusNotModified {
				t.Fatalf("round %d: If-None-Match %s on %s = %d, want 304", round, tags[k], k, rec.Code)
			}
		}
	}
}
