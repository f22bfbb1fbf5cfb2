package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// TestQuickstart walks the README's curl lines: MISS, HIT, 304, 404.
func TestQuickstart(t *testing.T) {
	users := newUsers(memo.WithBackend(memory.New()))
	srv := httptest.NewServer(newMux(users))
	defer srv.Close()
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	start := time.Now()
	miss, body := get("/users/42")
	if miss.StatusCode != 200 || miss.Header.Get("X-Cache") != "MISS" || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("first GET = %d %s after %v, want 200 MISS after the slow lookup", miss.StatusCode, miss.Header.Get("X-Cache"), time.Since(start))
	}
	start = time.Now()
	hit, body2 := get("/users/42")
	if hit.StatusCode != 200 || hit.Header.Get("X-Cache") != "HIT" || body2 != body {
		t.Fatalf("second GET = %d %s %q, want 200 HIT %q", hit.StatusCode, hit.Header.Get("X-Cache"), body2, body)
	}
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Logf("hit took %v", el) // not asserted: timing is not a test
	}
	nm, b := get("/users/42", "If-None-Match", hit.Header.Get("ETag"))
	if nm.StatusCode != http.StatusNotModified || b != "" {
		t.Fatalf("conditional GET = %d %q, want 304 with no body", nm.StatusCode, b)
	}
	nf, b := get("/users/99999")
	if nf.StatusCode != http.StatusNotFound || nf.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET missing user = %d %q (Cache-Control %q), want 404 no-store", nf.StatusCode, b, nf.Header.Get("Cache-Control"))
	}
	// The second time, the not-found comes from the cache (NegativeCache).
	nf, b = get("/users/99999")
	if nf.StatusCode != http.StatusNotFound || !strings.HasPrefix(nf.Header.Get("Cache-Status"), "memo; hit") {
		t.Fatalf("GET missing user again = %d %q (Cache-Status %q), want 404 from the cache", nf.StatusCode, b, nf.Header.Get("Cache-Status"))
	}
	sq, b := get("/squares?n=12")
	if sq.StatusCode != 200 || len(b) < len("12 squared is 144") || b[:17] != "12 squared is 144" {
		t.Fatalf("GET /squares?n=12 = %d %q", sq.StatusCode, b)
	}
	// /debug/memo shows what the calls above did to the users cache: a
	// miss and two hits for user 42 (the 304 was a hit), a miss and a
	// negative hit for the missing user.
	dbg, b := get("/debug/memo")
	var stats map[string]memo.Stats
	if err := json.Unmarshal([]byte(b), &stats); dbg.StatusCode != 200 || err != nil {
		t.Fatalf("GET /debug/memo = %d %q (%v)", dbg.StatusCode, b, err)
	}
	want := memo.Stats{Hits: 2, Misses: 2, NegativeHits: 1, Computations: 2, Errors: 1}
	if diff := cmp.Diff(want, stats["users"]); diff != "" {
		t.Errorf("GET /debug/memo: users (-want +got):\n%s", diff)
	}
	if got := stats["squares"]; got.Misses+got.Hits == 0 {
		t.Errorf("GET /debug/memo: squares = %+v, want the /squares call counted", got)
	}
}
