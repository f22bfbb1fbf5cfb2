// Command httpserver is the server that scripts/bench.sh loads with wrk. It
// serves, on 127.0.0.1 only:
//
//	/fixed   the JSON of bench.User (the same bytes as /hit's body) with
//	         Content-Type application/json: the plain net/http floor
//	/hit     httpadapter.Handler over a memo.Func whose entry is cached
//	/notmod  the same handler, for requests sent with If-None-Match: <etag>
//
// It prints "addr=HOST:PORT" and "etag=..." on stdout once it is serving
// (and writes them to -info), and exits by itself after -for.
//
//	go run ./cmd/httpserver -addr 127.0.0.1:0 -for 2m -info /tmp/info
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/bench"
	"github.com/gomemo/memo/httpadapter"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	life := flag.Duration("for", 2*time.Minute, "exit after this long")
	info := flag.String("info", "", "also write the addr= and etag= lines to this file")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("httpserver: %s is not a loopback address", *addr)
	}

	f := memo.New(bench.FetchUser, memo.Namespace("bench.http"), memo.Expire(time.Hour))
	adapter := httpadapter.Handler(f, func(*http.Request) (int64, error) { return 42, nil })

	// Warm the entry and learn the body and ETag the adapter serves.
	rec := httptest.NewRecorder()
	adapter.ServeHTTP(rec, httptest.NewRequest("GET", "/hit", nil))
	if rec.Code != 200 {
		log.Fatalf("httpserver: warm-up answered %d", rec.Code)
	}
	body := rec.Body.Bytes()
	etag := rec.Header().Get("Etag")
	check := func(hdr, val string, want int, cache string) {
		r := httptest.NewRequest("GET", "/hit", nil)
		if hdr != "" {
			r.Header.Set(hdr, val)
		}
		rec := httptest.NewRecorder()
		adapter.ServeHTTP(rec, r)
		if rec.Code != want || rec.Header().Get("X-Cache") != cache {
			log.Fatalf("httpserver: request with %s %q answered %d, X-Cache %q; want %d, %s",
				hdr, val, rec.Code, rec.Header().Get("X-Cache"), want, cache)
		}
	}
	check("", "", 200, "HIT")
	check("If-None-Match", etag, 304, "HIT")

	ct, cl := []string{"application/json"}, []string{strconv.Itoa(len(body))}
	fixed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = ct
		h["Content-Length"] = cl
		w.WriteHeader(200)
		w.Write(body)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /fixed", fixed)
	mux.Handle("GET /hit", adapter)
	mux.Handle("GET /notmod", adapter)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	lines := fmt.Sprintf("addr=%s\netag=%s\nbody_bytes=%d\ngomaxprocs=%d\n", ln.Addr(), etag, len(body), runtime.GOMAXPROCS(0))
	if *info != "" {
		if err := os.WriteFile(*info, []byte(lines), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Print(lines)

	time.AfterFunc(*life, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
