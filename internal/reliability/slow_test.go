package reliability_test

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/backends/redisbackend"
)

// clientLeakOpts ignore the background goroutines of the clients these
// tests create, which end on their own after the client is closed: go-redis
// probes a server it failed to dial once a second until it answers or the
// pool is closed.
var clientLeakOpts = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
}

// proxied is a backend whose every connection goes through proxies.
type proxied struct {
	b       memo.Backend
	proxies []*proxy
	close   func() // closes the client
}

// Each client is configured as its backend's documentation says and
// otherwise left at its defaults, which are longer than memo's Timeout:
// go-redis with ContextTimeoutEnabled (3 s read and write timeouts, a pool
// of 10 connections per CPU, 4 s to wait for one), the Memcached client's
// Timeout set to memo's (gomemcache has no context support, so its own
// Timeout is the bound), the AWS SDK's retryer and HTTP client.
var proxiedTargets = []struct {
	name string
	open func(t *testing.T, delay time.Duration) proxied
}{
	{"redis", func(t *testing.T, delay time.Duration) proxied {
		p := newProxy(t, env(t, "MEMO_REDIS_ADDR"), delay)
		c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true})
		return proxied{b: redisbackend.New(c), proxies: []*proxy{p}, close: func() { c.Close() }}
	}},
	{"redis-pool4", func(t *testing.T, delay time.Duration) proxied {
		// A pool much smaller than the number of callers: they queue for
		// connections, a wait that go-redis bounds by ctx.Done() (or its
		// PoolTimeout, 4 s).
		p := newProxy(t, env(t, "MEMO_REDIS_ADDR"), delay)
		c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, PoolSize: 4})
		return proxied{b: redisbackend.New(c), proxies: []*proxy{p}, close: func() { c.Close() }}
	}},
	{"cluster", func(t *testing.T, delay time.Duration) proxied {
		addrs := strings.Split(env(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
		route := map[string]string{}
		var ps []*proxy
		for _, a := range addrs {
			p := newProxy(t, a, delay)
			route[a] = p.Addr()
			ps = append(ps, p)
		}
		// The cluster client dials the nodes' own addresses (from CLUSTER
		// SLOTS); the dialer sends each through its node's proxy.
		var d net.Dialer
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true,
			Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if pa, ok := route[addr]; ok {
					addr = pa
				}
				return d.DialContext(ctx, network, addr)
			}})
		return proxied{b: redisbackend.New(c), proxies: ps, close: func() { c.Close() }}
	}},
	{"memcached", func(t *testing.T, delay time.Duration) proxied {
		p := newProxy(t, env(t, "MEMO_MEMCACHED_ADDR"), delay)
		c := memcache.New(p.Addr())
		// gomemcache cannot see ctx: its own Timeout is what bounds a
		// call, so it is set to memo's, as memcachebackend's doc says.
		c.Timeout = slowTimeout
		c.MaxIdleConns = 64
		return proxied{b: memcachebackend.New(c), proxies: []*proxy{p}, close: func() { c.Close() }}
	}},
	{"dynamodb", func(t *testing.T, delay time.Duration) proxied {
		endpoint := env(t, "MEMO_DYNAMODB_ENDPOINT")
		// The table is made by a direct client whose connections are
		// closed once it is done, so that they do not count as ours.
		direct := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(direct.CloseIdleConnections) // after DeleteTable, which runs first
		table := newTable(t, newDynamo(endpoint, func(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: direct} }))
		direct.CloseIdleConnections()
		p := newProxy(t, strings.TrimPrefix(endpoint, "http://"), delay)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		c := newDynamo("http://"+p.Addr(), func(o *dynamodb.Options) { o.HTTPClient = &http.Client{Transport: tr} })
		return proxied{b: dynamobackend.New(c, table), proxies: []*proxy{p}, close: tr.CloseIdleConnections}
	}},
}

// TestSlowOrSilentServer puts a proxy between memo and a real server, runs
// 64 callers through it, then makes it slow (every reply held for 4×
// memo's Timeout) or silent (connections accepted, requests read, nothing
// ever answered). Every call must still return fn's answer, within memo's
// Timeout plus fn's own time (plus scheduling slack); nothing may hang;
// the goroutines must not pile up and must all be gone once the load stops
// and the client is closed.
func TestSlowOrSilentServer(t *testing.T) {
	for _, tg := range proxiedTargets {
		for _, mode := range []int32{modeSlow, modeSilent} {
			t.Run(tg.name+"/"+modeNames[mode], func(t *testing.T) { runSlow(t, tg.open, mode) })
		}
	}
}

const (
	slowTimeout = 250 * time.Millisecond // memo.Timeout
	slowFn      = 20 * time.Millisecond  // fn's own time
	slowSlack   = 200 * time.Millisecond // scheduling, -race, a loaded CI machine
)

func runSlow(t *testing.T, open func(*testing.T, time.Duration) proxied, mode int32) {
	const (
		workers = 64
		minWarm = 200 * time.Millisecond
		maxWarm = 10 * time.Second
		fault   = time.Second
	)
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, clientLeakOpts...)
	base := runtime.NumGoroutine()
	openStart := time.Now()
	px := open(t, 4*slowTimeout)
	openTook := time.Since(openStart)
	// ours counts the goroutines of memo, its callers and the client: all
	// but the proxies' own.
	ours := func() int {
		n := runtime.NumGoroutine()
		for _, p := range px.proxies {
			n -= int(p.active.Load())
		}
		return n
	}
	tb := &timed{Backend: px.b}
	var (
		fl         faults
		runs       atomic.Int64
		faulty     atomic.Bool
		errs       atomic.Int64
		wrong      atomic.Int64
		warmHits   atomic.Int64
		faultCalls atomic.Int64
		mu         sync.Mutex
		lats       []time.Duration // calls started after the fault began
	)
	f := memo.New(func(ctx context.Context, a int) (Answer, error) {
		markRan(ctx)
		runs.Add(1)
		time.Sleep(slowFn)
		return answer(a), nil
	}, memo.Namespace(namespace("slow")), memo.WithBackend(tb), memo.Timeout(slowTimeout),
		memo.Expire(time.Minute), memo.OnError(fl.hook))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := g*1000 + i%4
				inFault := faulty.Load()
				// Half the callers can be cancelled (fn runs on a flight
				// goroutine of its own), half cannot (fn runs inline).
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if g%2 == 0 {
					ctx, cancel = context.WithCancel(ctx)
				}
				ctx, ran := withToken(ctx)
				start := time.Now()
				v, err := f.Call(ctx, a)
				d := time.Since(start)
				cancel()
				switch {
				case err != nil:
					errs.Add(1)
				case !sameAnswer(v, answer(a)):
					wrong.Add(1)
				case !ran.Load() && !inFault:
					warmHits.Add(1)
				}
				if inFault {
					faultCalls.Add(1)
					mu.Lock()
					lats = append(lats, d)
					mu.Unlock()
				}
			}
		})
	}
	warmStart := time.Now()
	time.Sleep(minWarm)
	for warmHits.Load() < workers && time.Since(warmStart) < maxWarm {
		time.Sleep(10 * time.Millisecond)
	}
	warmTook := time.Since(warmStart)
	tb.since.Store(time.Now().UnixNano())
	for _, p := range px.proxies {
		p.setMode(mode)
	}
	faulty.Store(true)
	// The fault lasts a second, and longer (up to 10 s) until 64 calls
	// that started under it have finished.
	peak := 0
	faultStart := time.Now()
	for time.Since(faultStart) < fault || faultCalls.Load() < workers && time.Since(faultStart) < 10*time.Second {
		peak = max(peak, ours())
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	hung := !waitDone(t, &wg, 30*time.Second, "the callers")
	afterLoad := ours()
	px.close()
	for _, p := range px.proxies {
		p.Close()
	}
	afterClose := settleGoroutines(base, 2*time.Second)

	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	var p50, p99, worst time.Duration
	if n := len(lats); n > 0 {
		p50, p99, worst = lats[n/2], lats[n*99/100], lats[n-1]
	}
	bound := slowTimeout + slowFn + slowSlack
	figures(t, "open_took", openTook, "mode", modeNames[mode], "workers", workers, "timeout", slowTimeout, "fn_time", slowFn,
		"warm_took", warmTook, "calls_in_fault", len(lats), "errors", errs.Load(), "wrong", wrong.Load(), "warm_hits", warmHits.Load(),
		"latency_p50", p50, "latency_p99", p99, "latency_max", worst, "bound", bound,
		"max_get", tb.get.get(), "max_set", tb.set.get(), "fn_runs", runs.Load(),
		"faults_reported", fl.n.Load(), "fault_ops", fl.ops(),
		"goroutines_before", base, "goroutines_peak", peak, "goroutines_after_load", afterLoad,
		"goroutines_after_close", afterClose)
	if hung {
		return
	}
	if n := errs.Load(); n > 0 {
		t.Errorf("%d calls returned an error; a slow or silent server must cost latency, never an answer", n)
	}
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d calls returned a wrong answer", n)
	}
	if len(lats) == 0 {
		t.Fatalf("no call ran while the server was %s", modeNames[mode])
	}
	if warmHits.Load() == 0 {
		t.Errorf("no hit before the fault: the proxy never passed traffic")
	}
	if g, s := tb.get.get(), tb.set.get(); max(g, s) > slowTimeout+slowSlack {
		t.Errorf("a backend call outlived memo's Timeout %v (+%v slack): slowest Get %v, Set %v", slowTimeout, slowSlack, g, s)
	}
	if worst > bound {
		t.Errorf("a call took %v with a %s server (p50 %v, p99 %v); memo must answer within Timeout %v + fn's %v (+%v slack) = %v",
			worst, modeNames[mode], p50, p99, slowTimeout, slowFn, slowSlack, bound)
	}
	// Each of the 64 callers may hold its own goroutine, a flight's, the
	// flight of its previous call still writing behind (for up to the
	// Timeout), and a few of the client's (a connection's reader and
	// writer): more is a pile-up. The count is back to the baseline after
	// the load (goleak, below).
	if pile := peak - base; pile > 8*workers {
		t.Errorf("goroutines piled up: %d before, %d at the peak (the proxies' own left out)", base, peak)
	}
	goleak.VerifyNone(t, leakOpts...)
}
