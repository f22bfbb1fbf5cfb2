package httpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/internal/testenv"
)

// This file holds the helpers of the tests that put a real HTTP cache in
// front of the handler: nginx (nginx_test.go) and gregjones/httpcache
// (TestClientCacheShortLived). Those caches keep their own wall clock, so
// these tests wait for real time to pass: every wait is a few seconds, the
// subtests run in parallel, and each check leaves a margin of at least
// half a second on the side where an honest cache could land (a cache
// counts in whole seconds).

// sharedRun names this test process in the paths sent through nginx,
// whose cache outlives the run: no run ever sees another's entries.
var sharedRun = fmt.Sprintf("%08x", rand.Uint32())

// page is the result the shared-cache tests serve: N counts fn's runs (or
// stays constant), Who is the caller the argument named.
type page struct {
	N   int64  `json:"n"`
	Who string `json:"who,omitempty"`
}

// hop is one request that reached the upstream server.
type hop struct {
	path, inm, origin, auth string
	status                  int
}

// upstream is one test's origin server: its handler at /up/PORT/RUN/...,
// the prefix nginx proxies to 127.0.0.1:PORT (scripts/servers.sh), and a
// log of every request that reached it.
type upstream struct {
	srv    *httptest.Server
	prefix string // "/up/PORT/RUN/TEST"
	via    string // nginx's base URL, "" when not behind nginx
	mu     sync.Mutex
	hops   []hop
}

// newUpstream serves h at prefix+"/v/{id}" (h may read the wildcard id) on
// a loopback server of its own. nginx is the address of the nginx that
// scripts/servers.sh starts, or "" for tests without it.
func newUpstream(t *testing.T, nginx string, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewUnstartedServer(nil)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	u.prefix = fmt.Sprintf("/up/%s/%s/%s", port, sharedRun, name)
	mux := http.NewServeMux()
	mux.Handle(u.prefix+"/v/{id}", h)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := &hopRecorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sr, r)
		u.mu.Lock()
		u.hops = append(u.hops, hop{r.URL.Path, r.Header.Get("If-None-Match"), r.Header.Get("Origin"), r.Header.Get("Authorization"), sr.status})
		u.mu.Unlock()
	})
	srv.Start()
	u.srv = srv
	if nginx != "" {
		u.via = "http://" + nginx
	}
	t.Cleanup(srv.Close)
	return u
}

type hopRecorder struct {
	http.ResponseWriter
	status int
}

func (s *hopRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// reached returns the requests for id that reached the upstream so far.
func (u *upstream) reached(id string) []hop {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []hop
	for _, h := range u.hops {
		if strings.HasSuffix(h.path, "/v/"+id) {
			out = append(out, h)
		}
	}
	return out
}

// got is one answer as the client saw it.
type got struct {
	status int
	header http.Header
	body   string
	at     time.Time // when the answer arrived
}

// page decodes a 200's body; it fails t on anything else.
func (g got) page(t *testing.T) page {
	t.Helper()
	var p page
	if g.status != http.StatusOK {
		t.Fatalf("status %d (%q), want 200", g.status, g.body)
	}
	if err := json.Unmarshal([]byte(g.body), &p); err != nil {
		t.Fatalf("body %q: %v", g.body, err)
	}
	return p
}

// get fetches prefix+"/v/"+id with c, through nginx when via is true and
// straight from the upstream otherwise; hdr holds name/value pairs.
func (u *upstream) get(t *testing.T, c *http.Client, via bool, id string, hdr ...string) got {
	t.Helper()
	base := u.srv.URL
	if via {
		base = u.via
	}
	return fetch(t, c, base+u.prefix+"/v/"+id, hdr...)
}

func fetch(t *testing.T, c *http.Client, url string, hdr ...string) got {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return got{res.StatusCode, res.Header, b.String(), time.Now()}
}

// newClient returns a plain client whose idle connections are closed when
// t ends.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// counter is a memoized fn over a string argument: each run returns the
// number of runs so far (or 42 when constant), after failing the first
// failFirst runs with err. With whoFromArg, the argument is "id|user" and
// the answer names the user.
type counter struct {
	runs       atomic.Int64
	constant   bool
	whoFromArg bool
	failFirst  int64
	err        error
}

func (c *counter) fn(ctx context.Context, arg string) (page, error) {
	n := c.runs.Add(1)
	if n <= c.failFirst {
		return page{}, c.err
	}
	var p page
	if c.whoFromArg {
		_, p.Who, _ = strings.Cut(arg, "|")
	}
	p.N = n
	if c.constant {
		p.N = 42
	}
	return p, nil
}

// newCounterFunc memoizes c.fn in memory with expire and opts.
func newCounterFunc(t *testing.T, c *counter, expire time.Duration, opts ...memo.Option) *memo.Func[string, page] {
	opts = append([]memo.Option{
		memo.Namespace(testenv.NS(t, "shared")),
		memo.WithBackend(memory.New()),
		memo.Expire(expire),
	}, opts...)
	return memo.New(c.fn, opts...)
}

// sleepUntil waits for the wall clock to reach at. The caches under test
// keep their own clocks, so there is no clock to drive.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }
