// Command benchserver serves the adapter and a fixed-bytes handler on
// loopback for load tests (wrk); it is not part of the library.
//
//	go run ./httpadapter/internal/benchserver -addr 127.0.0.1:8089 -for 2m
//	wrk -t2 -c32 -d5s http://127.0.0.1:8089/memo     # adapter, hit
//	wrk -t2 -c32 -d5s http://127.0.0.1:8089/fixed    # same bytes, no cache
//	wrk -t2 -c32 -d5s -H 'If-None-Match: <etag>' http://127.0.0.1:8089/memo  # 304
//
// It prints the ETag of /memo, and exits by itself after -for. The measured
// comparison (the adapter's hit and 304 against handlers that write the
// same headers and bytes, and against gin-cache, CPUs pinned, rounds
// interleaved) is scripts/httpbench.sh with bench/cmd/httpserver; see
// docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/httpadapter"
)

type user struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func fetchUser(ctx context.Context, id int64) (user, error) {
	return user{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "listen address (loopback only)")
	life := flag.Duration("for", 2*time.Minute, "exit after this long")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("benchserver: %s is not a loopback address", *addr)
	}

	f := memo.New(fetchUser, memo.WithBackend(memory.New()), memo.Expire(time.Hour))
	adapter := httpadapter.Handler(f, func(*http.Request) (int64, error) { return 7, nil })
	rec := httptest.NewRecorder()
	adapter.ServeHTTP(rec, httptest.NewRequest("GET", "/memo", nil))
	body := rec.Body.Bytes()
	cl := strconv.Itoa(len(body))

	mux := http.NewServeMux()
	mux.Handle("GET /memo", adapter)
	mux.HandleFunc("GET /fixed", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{cl}
		w.Write(body)
	})
	fmt.Printf("etag %s\nbody %s\n", rec.Header().Get("ETag"), body)
	srv := &http.Server{Addr: *addr, Handler: mux}
	time.AfterFunc(*life, func() { srv.Close() })
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
