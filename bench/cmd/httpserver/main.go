// Command httpserver is the server that scripts/httpbench.sh loads with
// wrk. It serves, on 127.0.0.1 only, one endpoint several ways (the JSON of
// bench.User for id 42):
//
//	/bytes         the body with Content-Type and Content-Length only: the
//	               plain net/http floor
//	/fixed         the headers and body of the adapter's hit, written from
//	               memory: what /hit is measured against
//	/hit           httpadapter.Handler over a memo.Func whose entry is cached
//	/notmod-fixed  the headers of the adapter's 304, written from memory,
//	               and status 304: what /notmod is measured against
//	/notmod        the adapter, for requests sent with If-None-Match: <etag>
//	/gin/cache     gin with github.com/chenyahui/gin-cache (memory store,
//	               CacheByRequestURI), a Go HTTP caching middleware, hit
//	/gin/cache-same  gin-cache in front of a handler writing the adapter's
//	               hit headers and body: the same response as /gin/memo
//	/gin/memo      the adapter through the same gin engine (gin.WrapH), hit
//
// It prints "addr=HOST:PORT", "etag=..." and more on stdout once it is
// serving (and writes them to -info), and exits by itself after -for. With
// -pprof ADDR it also serves net/http/pprof on ADDR (loopback; port 0 picks
// one, printed as "pprof=HOST:PORT").
//
//	go run ./cmd/httpserver -addr 127.0.0.1:0 -for 2m -info /tmp/info
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"time"

	gincache "github.com/chenyahui/gin-cache"
	"github.com/chenyahui/gin-cache/persist"
	"github.com/gin-gonic/gin"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/bench"
	"github.com/gomemo/memo/httpadapter"
)

func loopback(addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("httpserver: %s is not a loopback address", addr)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	life := flag.Duration("for", 2*time.Minute, "exit after this long")
	info := flag.String("info", "", "also write the addr= and etag= lines to this file")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address")
	flag.Parse()
	loopback(*addr)

	f := memo.New(bench.FetchUser, memo.Namespace("bench.http"), memo.Expire(time.Hour))
	adapter := httpadapter.Handler(f, func(*http.Request) (int64, error) { return 42, nil })

	// Warm the entry and learn the headers and body the adapter serves on
	// a hit and on a 304.
	serve := func(hdr, val string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/hit", nil)
		if hdr != "" {
			r.Header.Set(hdr, val)
		}
		rec := httptest.NewRecorder()
		adapter.ServeHTTP(rec, r)
		return rec
	}
	if rec := serve("", ""); rec.Code != 200 {
		log.Fatalf("httpserver: warm-up answered %d", rec.Code)
	}
	hit := serve("", "")
	body := hit.Body.Bytes()
	etag := hit.Header().Get("Etag")
	notmod := serve("If-None-Match", etag)
	for _, c := range []struct {
		rec   *httptest.ResponseRecorder
		code  int
		cache string
	}{{hit, 200, "HIT"}, {notmod, 304, "HIT"}} {
		if c.rec.Code != c.code || c.rec.Header().Get("X-Cache") != c.cache {
			log.Fatalf("httpserver: answered %d, X-Cache %q; want %d, %s", c.rec.Code, c.rec.Header().Get("X-Cache"), c.code, c.cache)
		}
	}
	hitHeader, notmodHeader := maps.Clone(hit.Header()), maps.Clone(notmod.Header())
	if !json.Valid(body) {
		log.Fatalf("httpserver: body %q is not JSON", body)
	}

	ct, cl := []string{"application/json"}, []string{strconv.Itoa(len(body))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = ct
		h["Content-Length"] = cl
		w.WriteHeader(200)
		w.Write(body)
	})
	// The same header values every time, as a handler serving a file from
	// memory would: the slices are shared, net/http only reads them.
	mux.HandleFunc("GET /fixed", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range hitHeader {
			h[k] = v
		}
		w.WriteHeader(200)
		w.Write(body)
	})
	mux.HandleFunc("GET /notmod-fixed", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range notmodHeader {
			h[k] = v
		}
		w.WriteHeader(304)
	})
	mux.Handle("GET /hit", adapter)
	mux.Handle("GET /notmod", adapter)

	// gin-cache: the body is what FetchUser's JSON encodes to, the same
	// bytes; on a hit the middleware answers from its store.
	gin.SetMode(gin.ReleaseMode)
	g := gin.New()
	store := persist.NewMemoryStore(time.Hour)
	g.GET("/gin/cache", gincache.CacheByRequestURI(store, time.Hour), func(c *gin.Context) {
		u, err := bench.FetchUser(c, 42)
		if err != nil {
			c.AbortWithStatus(500)
			return
		}
		c.JSON(200, u)
	})
	// The same middleware in front of a handler that writes the adapter's
	// hit headers and body: the same response on the wire as /gin/memo,
	// replayed by gin-cache (whose max-age then never counts down).
	g.GET("/gin/cache-same", gincache.CacheByRequestURI(store, time.Hour), func(c *gin.Context) {
		h := c.Writer.Header()
		for k, v := range hitHeader {
			h[k] = v
		}
		c.Status(200)
		c.Writer.Write(body)
	})
	g.GET("/gin/memo", gin.WrapH(adapter))
	mux.Handle("/gin/", g)
	for _, p := range []string{"/gin/cache", "/gin/cache-same", "/gin/memo"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 || !json.Valid(rec.Body.Bytes()) {
			log.Fatalf("httpserver: %s answered %d %q", p, rec.Code, rec.Body.Bytes())
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	lines := fmt.Sprintf("addr=%s\netag=%s\nbody_bytes=%d\nhit_headers=%d\n",
		ln.Addr(), etag, len(body), len(hitHeader))
	if *pprofAddr != "" {
		loopback(*pprofAddr)
		pln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			log.Fatal(err)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { log.Print(http.Serve(pln, pm)) }()
		lines += fmt.Sprintf("pprof=%s\n", pln.Addr())
	}
	lines += fmt.Sprintf("gomaxprocs=%d\n", runtime.GOMAXPROCS(0))
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
