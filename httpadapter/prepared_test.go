package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

// TestStaleIfErrorAfterSlowFn: a stale answer served because fn failed is
// sent after fn ran; the windows it states are what is left of them then,
// not when the entry was read before fn ran (found on review: the handler
// took the entry's CheckedAt as the time of the answer, and a 20 s fn
// made stale-if-error 20 s too long).
func TestStaleIfErrorAfterSlowFn(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{
				memo.Expire(time.Minute), memo.StaleWhileRevalidate(30 * time.Second), memo.StaleIfError(2 * time.Minute),
			})
			fx.get("k")
			errDown := errors.New("origin down")
			fx.setBehave(func(context.Context, int64) (int64, error) {
				fx.clk.Advance(20 * time.Second) // fn takes 20 s to fail
				return 0, errDown
			})
			fx.clk.Advance(100 * time.Second) // past the SWR window, within SIE's
			// Sent at +120 s: 60 s past expiry, 60 s left of the 180 s SIE window.
			checkHeaders(t, "stale if error after a slow fn", fx.get("k"), map[string]string{
				"status": "200", "body": "1", "X-Cache": "HIT",
				"Cache-Status":  "memo; hit; ttl=-60",
				"Cache-Control": "private, max-age=0, stale-if-error=60",
			})
		})
	}
}

// TestHotValuesConcurrent: 8 goroutines hit 600 entries while the clock
// moves and some responses carry a middleware's cookie; every response
// has its own entry's values, its own scope, and a max-age equal to its
// Cache-Status ttl (run it with -race). Written on review.
func TestHotValuesConcurrent(t *testing.T) {
	for _, tier := range freshTiers {
		t.Run(tier.name, func(t *testing.T) {
			fx := newFreshFixture(t, tier.opts(), []memo.Option{memo.Expire(time.Hour), memo.Timeout(30 * time.Second)}, Public())
			const keys = 600
			tags := make([]string, keys)
			bodies := make([]string, keys)
			lms := make([]string, keys)
			for i := range keys {
				r := fx.get(strconv.Itoa(i))
				tags[i], bodies[i], lms[i] = r.Header().Get("Etag"), r.Body.String(), r.Header().Get("Last-Modified")
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				// At most 10,000 steps of 137 ms: 23 minutes of the entries'
				// hour, so that every request is a hit.
				for range 10000 {
					select {
					case <-stop:
						return
					default:
						fx.clk.Advance(137 * time.Millisecond)
						runtime.Gosched()
					}
				}
			}()
			var mu sync.Mutex
			var errs []string
			var workers sync.WaitGroup
			for g := range 8 {
				workers.Add(1)
				go func() {
					defer workers.Done()
					for j := range 1500 {
						i := (j*7 + g*13) % keys
						cookie := (j+g)%5 == 0
						rec := httptest.NewRecorder()
						req := httptest.NewRequest("GET", "/"+strconv.Itoa(i), nil)
						if cookie {
							rec.Header().Set("Set-Cookie", "a=b")
						}
						fx.h.ServeHTTP(rec, req)
						h := rec.Header()
						cc, cs := h.Get("Cache-Control"), h.Get("Cache-Status")
						var bad []string
						if h.Get("Etag") != tags[i] || rec.Body.String() != bodies[i] || h.Get("Content-Length") != strconv.Itoa(len(bodies[i])) || h.Get("Last-Modified") != lms[i] {
							bad = append(bad, "entry")
						}
						scope := "public"
						if cookie {
							scope = "private"
						}
						ttl := strings.TrimPrefix(cs, "memo; hit; ttl=")
						if cc != scope+", max-age="+ttl || h.Get("X-Cache") != "HIT" {
							bad = append(bad, "cc/cs")
						}
						if bad != nil {
							mu.Lock()
							errs = append(errs, fmt.Sprintf("key %d cookie %v: %v: %v body %q", i, cookie, bad, h, rec.Body))
							mu.Unlock()
						}
					}
				}()
			}
			workers.Wait()
			close(stop)
			wg.Wait()
			for k, e := range errs {
				if k > 5 {
					break
				}
				t.Error(e)
			}
			if len(errs) > 0 {
				t.Errorf("%d bad responses", len(errs))
			}
		})
	}
}
