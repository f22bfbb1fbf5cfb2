package redisbackend_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
)

// The clients exactly as docs/backends.md and docs/getting-started.md build
// them (addresses aside). A change to the docs' snippets belongs here too.

func docClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true, // memo.Timeout bounds every request
	})
}

// docClusterClient gives each client a copy of addrs: go-redis keeps
// ClusterOptions.Addrs and appends to it as it learns nodes, so two
// clients given one slice race on its array (seen under -race in a
// failover with two clients).
func docClusterClient(addrs ...string) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 slices.Clone(addrs),
		ContextTimeoutEnabled: true,
	})
}

func docRing(addrs map[string]string) *redis.Ring {
	return redis.NewRing(&redis.RingOptions{
		Addrs:                 addrs,
		ContextTimeoutEnabled: true,
	})
}

// stalledListener accepts TCP connections and never answers on them: a
// server that is up but stalled (or a black hole past the handshake).
func stalledListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

const (
	stallTimeout = 100 * time.Millisecond
	stallSlack   = 10 * time.Millisecond
)

// timed runs call and returns how long it took, and how late the runtime
// delivered a plain timer of stallTimeout armed beside it: on a loaded
// machine (-race, other tests, two CPUs) a deadline fires late for
// everyone, and that lateness is the scheduler's, not the store's. A call
// is over budget when d > stallTimeout + stallSlack + late.
func timed(call func()) (d, late time.Duration) {
	ctl := make(chan time.Duration, 1)
	start := time.Now()
	tm := time.AfterFunc(stallTimeout, func() { ctl <- time.Since(start) - stallTimeout })
	call()
	d = time.Since(start)
	if !tm.Stop() {
		late = <-ctl
	}
	return d, late
}

// checkStalledCalls makes calls through memo (each on a new key, so each
// is a miss that reads the store) with memo.Timeout(100 ms), and checks
// that each costs at most Timeout + 10 ms, that each returns fn's answer,
// and that the store's faults were reported (the calls did reach it). Then
// it checks the backend's own Get and Set under a 100 ms ctx deadline.
func checkStalledCalls(t *testing.T, b memo.Backend, calls int) {
	t.Helper()
	var faults atomic.Int64
	fn := func(_ context.Context, n int) (int, error) { return n * 2, nil }
	f := memo.New(fn, memo.WithBackend(b), memo.Timeout(stallTimeout),
		memo.Namespace(fmt.Sprintf("stall.%d", time.Now().UnixNano())),
		memo.OnError(func(context.Context, error) { faults.Add(1) }))
	// A call over budget gets a second opinion from another call right
	// after it: a machine busy enough to run one wake-up late by a few ms
	// rarely does it twice in a row, while a client that ignores the
	// deadline is slow every time.
	call := func(i int) (d, late time.Duration) {
		var v int
		var err error
		d, late = timed(func() { v, err = f.Call(context.Background(), i) })
		if err != nil || v != i*2 {
			t.Fatalf("call %d = %v, %v; want %d, nil (a stalled store is a miss)", i, v, err, i*2)
		}
		return d, late
	}
	var worst, worstLate time.Duration
	for i := range calls {
		d, late := call(i)
		if d > worst {
			worst, worstLate = d, late
		}
		if d > stallTimeout+stallSlack+late {
			d2, late2 := call(i + 1_000_000)
			if d2 > stallTimeout+stallSlack+late2 {
				t.Errorf("calls %d and %d took %v and %v on a stalled store, want at most Timeout %v + %v (+ %v, %v the runtime's timers ran late)",
					i, i+1_000_000, d, d2, stallTimeout, stallSlack, late, late2)
			}
		}
	}
	t.Logf("memo calls on the stalled store: worst %v of %d (Timeout %v; a timer beside it ran %v late)",
		worst, calls, stallTimeout, worstLate)
	if faults.Load() == 0 {
		t.Errorf("no fault reported: the calls never reached the stalled store, the test proves nothing")
	}

	// The backend alone, under a caller's 100 ms deadline.
	for i := range 5 {
		for _, op := range []struct {
			name string
			do   func(ctx context.Context, key string) error
		}{
			{"Get", func(ctx context.Context, key string) error { _, _, err := b.Get(ctx, key); return err }},
			{"Set", func(ctx context.Context, key string) error { return b.Set(ctx, key, []byte("v"), time.Minute) }},
		} {
			direct := func(key string) (d, late time.Duration, err error) {
				d, late = timed(func() {
					ctx, cancel := context.WithTimeout(context.Background(), stallTimeout)
					err = op.do(ctx, key)
					cancel()
				})
				return d, late, err
			}
			d, late, err := direct(fmt.Sprintf("stall:direct:%d", i))
			if d > stallTimeout+stallSlack+late {
				d2, late2, err2 := direct(fmt.Sprintf("stall:direct:%d:again", i))
				if d2 > stallTimeout+stallSlack+late2 {
					t.Errorf("%s took %v and %v under a %v deadline (errors %v, %v; timers ran %v, %v late)",
						op.name, d, d2, stallTimeout, err, err2, late, late2)
				}
			}
		}
	}
}

// TestStalledStoreCostsTimeout proves promise 7 of issue 9 for Redis: with
// every client built the way the docs build it, a stalled Redis costs each
// memo call at most memo.Timeout + 10 ms, and the call still answers.
func TestStalledStoreCostsTimeout(t *testing.T) {
	t.Run("standalone/never-answers", func(t *testing.T) {
		c := docClient(stalledListener(t))
		t.Cleanup(func() { c.Close() })
		checkStalledCalls(t, redisbackend.New(c), 20)
	})
	t.Run("standalone/stopped-after-warm-up", func(t *testing.T) {
		p := startRedis(t)
		c := docClient(p.addr())
		t.Cleanup(func() { c.Close() })
		b := redisbackend.New(c)
		warm(t, b)
		p.pause()
		checkStalledCalls(t, b, 20)
	})
	t.Run("ring/stopped-after-warm-up", func(t *testing.T) {
		p := startRedis(t)
		c := docRing(map[string]string{"a": p.addr()})
		t.Cleanup(func() { c.Close() })
		b := redisbackend.New(c)
		warm(t, b)
		p.pause()
		checkStalledCalls(t, b, 20)
	})
	t.Run("cluster", func(t *testing.T) {
		nodes := startCluster(t, 3, 0)
		t.Run("one-master-stopped-after-warm-up", func(t *testing.T) {
			c := docClusterClient(nodes[0].addr())
			t.Cleanup(func() { c.Close() })
			b := redisbackend.New(c)
			warm(t, b)
			nodes[1].pause()
			t.Cleanup(nodes[1].resume)
			checkStalledCalls(t, b, 30)
		})
		t.Run("two-masters-stopped-new-clients", func(t *testing.T) {
			// A fresh ClusterClient looks its command table up (COMMAND)
			// on a random node under its own 5 s timeout: with two nodes
			// of three stalled, six fresh clients all miss that with
			// odds of 1 in 729.
			for _, p := range nodes[1:] {
				p.pause()
				t.Cleanup(p.resume)
			}
			for range 6 {
				// Seeded with every node, as an application lists them.
				c := docClusterClient(nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
				t.Cleanup(func() { c.Close() })
				checkStalledCalls(t, redisbackend.New(c), 5)
			}
		})
		t.Run("all-stopped-new-client", func(t *testing.T) {
			for _, p := range nodes {
				p.pause()
				t.Cleanup(p.resume)
			}
			c := docClusterClient(nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
			t.Cleanup(func() { c.Close() })
			checkStalledCalls(t, redisbackend.New(c), 10)
		})
	})
}

// warm sends a few commands through b so that the client has its
// connections (and, on a cluster, its slot map) before the server stalls.
func warm(t *testing.T, b memo.Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 30 {
		if err := b.Set(ctx, fmt.Sprintf("warm:%d", i), []byte("v"), time.Minute); err != nil {
			t.Fatalf("warming up: %v", err)
		}
	}
}

// TestNewRefusesClientsWithoutContextTimeout: a go-redis client that would
// ignore ctx deadlines on the socket (ContextTimeoutEnabled false) would let
// a stalled Redis cost 3-5 s per call whatever memo.Timeout says, so New
// refuses it, for every kind of client, and says what to set.
func TestNewRefusesClientsWithoutContextTimeout(t *testing.T) {
	const addr = "127.0.0.1:1" // never dialled
	for _, tc := range []struct {
		name   string
		client func(enabled bool) redis.UniversalClient
	}{
		{"Client", func(on bool) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: on})
		}},
		{"ClusterClient", func(on bool) redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: on})
		}},
		{"Ring", func(on bool) redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: on})
		}},
		{"FailoverClient", func(on bool) redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m",
				SentinelAddrs: []string{addr}, ContextTimeoutEnabled: on})
		}},
		{"FailoverClusterClient", func(on bool) redis.UniversalClient {
			return redis.NewFailoverClusterClient(&redis.FailoverOptions{MasterName: "m",
				SentinelAddrs: []string{addr}, ContextTimeoutEnabled: on})
		}},
		{"UniversalClient/simple", func(on bool) redis.UniversalClient {
			return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: on})
		}},
		{"UniversalClient/cluster", func(on bool) redis.UniversalClient {
			return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr, addr},
				ContextTimeoutEnabled: on})
		}},
		{"UniversalClient/failover", func(on bool) redis.UniversalClient {
			return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr},
				MasterName: "m", ContextTimeoutEnabled: on})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off := tc.client(false)
			defer off.Close()
			func() {
				defer func() {
					r := recover()
					s, _ := r.(string)
					if !strings.HasPrefix(s, "redisbackend: ") || !strings.Contains(s, "ContextTimeoutEnabled: true") {
						t.Errorf("New(%T without ContextTimeoutEnabled): panic = %v, want a redisbackend: message saying to set ContextTimeoutEnabled: true", off, r)
					}
				}()
				redisbackend.New(off)
			}()
			on := tc.client(true)
			defer on.Close()
			redisbackend.New(on) // must not panic
		})
	}
}

// TestNewRefusesClientsWithoutSocketDeadlines: a ReadTimeout or
// WriteTimeout of -2 stops go-redis from setting any socket deadline, so no
// ctx deadline could end a stalled command either.
func TestNewRefusesClientsWithoutSocketDeadlines(t *testing.T) {
	const addr = "127.0.0.1:1" // never dialled
	for _, c := range []redis.UniversalClient{
		redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: -2}),
		redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, WriteTimeout: -2}),
		redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, ReadTimeout: -2}),
		redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true, WriteTimeout: -2}),
	} {
		func() {
			defer c.Close()
			defer func() {
				if s, _ := recover().(string); !strings.HasPrefix(s, "redisbackend: ") || !strings.Contains(s, "-2") {
					t.Errorf("New(%T with a -2 timeout): panic = %q, want a redisbackend: message naming -2", c, s)
				}
			}()
			redisbackend.New(c)
		}()
	}
	// -1 (no timeout of its own) still lets the ctx deadline through.
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: -1})
	defer c.Close()
	redisbackend.New(c)
}
