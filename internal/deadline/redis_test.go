package deadline

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// stalled is a TCP server that accepts connections and never answers.
type stalled struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newStalled(t *testing.T) *stalled {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stalled{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// A GET against a server that never answers, bounded by a 100 ms Context,
// returns within 100 ms and a few: go-redis sets the socket deadline from
// Deadline(), and its retry backoff and pool wait end on Done().
func TestRedisStalledBound(t *testing.T) {
	const timeout = 100 * time.Millisecond
	const slack = 50 * time.Millisecond // the assertion, loose for a shared machine; the figures are logged
	s := newStalled(t)

	variants := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"deadline.WithTimeout", func() (context.Context, context.CancelFunc) {
			return WithTimeout(context.Background(), timeout)
		}},
		{"context.WithTimeout", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), timeout)
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			// Defaults otherwise: MaxRetries 3, backoff 8-512 ms, 3 s read
			// timeout, 5 s pool timeout.
			c := redis.NewClient(&redis.Options{Addr: s.ln.Addr().String(), ContextTimeoutEnabled: true})
			defer c.Close()
			var worst, best time.Duration = 0, time.Hour
			for i := range 5 {
				ctx, cancel := v.ctx()
				start := time.Now()
				err := c.Get(ctx, "k").Err()
				el := time.Since(start)
				cancel()
				if err == nil {
					t.Fatal("GET on a stalled server succeeded")
				}
				t.Logf("GET %d: %v after %v", i, err, el)
				if el < timeout-time.Millisecond {
					t.Errorf("GET returned after %v, before the %v deadline", el, timeout)
				}
				worst = max(worst, el)
				best = min(best, el)
			}
			t.Logf("%s: stalled GETs took %v to %v (timeout %v)", v.name, best, worst, timeout)
			// The best of 5: a process starved by others is late with any
			// context; a context that does not bound the call is late in
			// every attempt.
			if best > timeout+slack {
				t.Errorf("the fastest of 5 stalled GETs took %v, want %v (+%v)", best, timeout, slack)
			}
		})
	}

	// The pool wait: one connection, held by a stalled GET; a second caller
	// waits for a turn in go-redis's pool on its context's Done.
	t.Run("pool wait", func(t *testing.T) {
		c := redis.NewClient(&redis.Options{Addr: s.ln.Addr().String(), ContextTimeoutEnabled: true, PoolSize: 1})
		defer c.Close()
		hold, cancelHold := WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancelHold()
		held := make(chan struct{})
		go func() {
			defer close(held)
			c.Get(hold, "k")
		}()
		time.Sleep(20 * time.Millisecond)
		ctx, cancel := WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c.Get(ctx, "k").Err()
		el := time.Since(start)
		t.Logf("waiting GET: %v after %v", err, el)
		if el < 49*time.Millisecond || el > 50*time.Millisecond+4*slack {
			t.Errorf("waiting GET returned after %v, want 50ms", el)
		}
		<-held
	})
}

// closing is a TCP server that closes every connection it accepts: go-redis
// sees EOF, which it retries after a backoff sleep that ends on ctx.Done.
func newClosing(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// The retry backoff: every attempt fails at once with EOF and go-redis
// sleeps 80 ms between attempts (internal.Sleep selects on ctx.Done): the
// second sleep spans the deadline, and only Done closing ends it.
func TestRedisRetryBackoffBound(t *testing.T) {
	const timeout = 100 * time.Millisecond
	ln := newClosing(t)
	c := redis.NewClient(&redis.Options{
		Addr: ln.Addr().String(), ContextTimeoutEnabled: true,
		MaxRetries: 5, MinRetryBackoff: 80 * time.Millisecond, MaxRetryBackoff: 80 * time.Millisecond,
		DialerRetries: 1,
	})
	defer c.Close()
	for _, v := range []struct {
		name string
		f    func() (context.Context, context.CancelFunc)
	}{
		{"deadline.WithTimeout", func() (context.Context, context.CancelFunc) { return WithTimeout(context.Background(), timeout) }},
		{"context.WithTimeout", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), timeout)
		}},
	} {
		best := time.Hour
		for i := range 3 {
			ctx, cancel := v.f()
			start := time.Now()
			err := c.Get(ctx, "k").Err()
			el := time.Since(start)
			cancel()
			t.Logf("%s GET %d: %v after %v", v.name, i, err, el)
			if el < timeout-time.Millisecond {
				t.Errorf("%s: GET returned after %v, before the deadline", v.name, el)
			}
			best = min(best, el)
		}
		if best > timeout+50*time.Millisecond {
			t.Errorf("%s: the fastest of 3 GETs took %v, want %v", v.name, best, timeout)
		}
	}

	// The control: a context with the same Deadline whose Done never
	// closes is not bounded here, so the test does exercise Done.
	ctx := &deadlineOnly{Context: context.Background(), d: time.Now().Add(timeout)}
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	el := time.Since(start)
	t.Logf("deadline-only context: %v after %v", err, el)
	if el < timeout+40*time.Millisecond {
		t.Errorf("a deadline-only context returned after %v: the test does not reach the backoff sleep", el)
	}
}

func redisAddr(tb testing.TB) string {
	a := os.Getenv("MEMO_REDIS_ADDR")
	if a == "" {
		tb.Skip(`MEMO_REDIS_ADDR not set: eval "$(bash scripts/servers.sh env)"`)
	}
	return a
}

// redisFixture is a client on the test Redis server and a key holding a
// 150-byte value.
func redisFixture(tb testing.TB, poolSize int) (*redis.Client, string) {
	c := redis.NewClient(&redis.Options{Addr: redisAddr(tb), ContextTimeoutEnabled: true, PoolSize: poolSize})
	tb.Cleanup(func() { c.Close() })
	key := "memo:internal/deadline:bench:" + tb.Name()
	if err := c.Set(context.Background(), key, strings.Repeat("v", 150), time.Hour).Err(); err != nil {
		tb.Skipf("redis at %s: %v", redisAddr(tb), err)
	}
	tb.Cleanup(func() { c.Del(context.Background(), key) })
	return c, key
}

// With a live server, every variant reads the value; and a context that
// ended makes go-redis fail at once.
func TestRedisGet(t *testing.T) {
	c, key := redisFixture(t, 0)
	ctx, cancel := WithTimeout(context.Background(), time.Second)
	v, err := c.Get(ctx, key).Result()
	if err != nil || len(v) != 150 {
		t.Fatalf("GET = %d bytes, %v", len(v), err)
	}
	cancel()
	if err := c.Get(ctx, key).Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("GET with a released context: %v, want Canceled", err)
	}
	ctx2 := New(context.Background(), 0)
	defer ctx2.Release()
	if err := c.Get(ctx2, key).Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET with an expired context: %v, want DeadlineExceeded", err)
	}
}
