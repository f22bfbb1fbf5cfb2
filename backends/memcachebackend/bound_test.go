package memcachebackend_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.uber.org/goleak"

	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/fakememcached"
	"github.com/gomemo/memo/internal/testenv"
)

// silent is a TCP listener that accepts connections and never answers.
type silent struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func listenSilent(t *testing.T) *silent {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silent{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
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
	t.Cleanup(s.close)
	return s
}

func (s *silent) close() {
	s.ln.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// op is one Backend method called with ctx.
type op struct {
	name string
	call func(ctx context.Context, b *memcachebackend.Backend, key string) error
}

var ops = []op{
	{"Get", func(ctx context.Context, b *memcachebackend.Backend, key string) error {
		_, _, err := b.Get(ctx, key)
		return err
	}},
	{"Set", func(ctx context.Context, b *memcachebackend.Backend, key string) error {
		return b.Set(ctx, key, []byte("v"), time.Minute)
	}},
	{"Delete", func(ctx context.Context, b *memcachebackend.Backend, key string) error {
		return b.Delete(ctx, key)
	}},
	{"Clear", func(ctx context.Context, b *memcachebackend.Backend, key string) error {
		return b.Clear(ctx, key[:len(key)-2])
	}},
}

// slack is how much later than ctx's end a call may return: room for a
// loaded machine under -race, and still well short of the client's
// Timeout (300 ms, 2 s), which a call not bounded by ctx would take.
const slack = 100 * time.Millisecond

// checkBound calls every method on b with a 100 ms deadline, and with a
// ctx cancelled after 20 ms, and checks that each returns by then plus
// slack with an error wrapping ctx.Err().
func checkBound(t *testing.T, b *memcachebackend.Backend, ns string) {
	t.Helper()
	for _, o := range ops {
		for _, tc := range []struct {
			name  string
			after time.Duration
			want  error
			ctx   func() (context.Context, context.CancelFunc)
		}{
			{"deadline", 100 * time.Millisecond, context.DeadlineExceeded, func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}},
			{"cancel", 20 * time.Millisecond, context.Canceled, func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			}},
		} {
			ctx, cancel := tc.ctx()
			start := time.Now()
			err := o.call(ctx, b, ns+":k")
			el := time.Since(start)
			cancel()
			if !errors.Is(err, tc.want) {
				t.Errorf("%s, %s after %v: error %v, want one wrapping %v", o.name, tc.name, tc.after, err, tc.want)
			}
			if el > tc.after+slack {
				t.Errorf("%s, %s after %v: returned after %v, more than %v late", o.name, tc.name, tc.after, el, slack)
			}
		}
	}
}

// TestStalledServerBound: against a server that accepts connections and
// never answers, every method returns within its ctx's deadline plus
// slack (not after the client's Timeout), with an error wrapping ctx.Err();
// and the goroutines left on the stalled requests end by the client's
// Timeout.
func TestStalledServerBound(t *testing.T) {
	s := listenSilent(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const clientTimeout = 300 * time.Millisecond
	for _, refresh := range []time.Duration{memcachebackend.DefaultGenerationRefresh, 0} {
		c := memcache.New(s.ln.Addr().String())
		c.Timeout = clientTimeout
		checkBound(t, memcachebackend.New(c, memcachebackend.GenerationRefresh(refresh)), testenv.NS(t, "stall"))
	}
	// The abandoned requests end by the client's Timeout (a dial and a
	// request at most): goleak waits for them.
	time.Sleep(2 * clientTimeout)
}

// TestStallAfterCachedGeneration: a server that stalls once the generation
// is cached, so that Get and Set are one plain request.
func TestStallAfterCachedGeneration(t *testing.T) {
	s := fakememcached.Start(t)
	c := memcache.New(s.Addr())
	c.Timeout = 2 * time.Second
	b := memcachebackend.New(c, memcachebackend.GenerationRefresh(time.Hour))
	ns := testenv.NS(t, "stallcached")
	ctx := context.Background()
	if err := b.Set(ctx, ns+":k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	testenv.WantGet(t, b, ns+":k", "v")
	s.Stall()
	checkBound(t, b, ns)
}

// TestValueNotRetainedWhenAbandoned: a Set that ctx abandons while its
// write is still under way sends the value as it was when Set was called,
// even if the caller reuses the slice at once.
func TestValueNotRetainedWhenAbandoned(t *testing.T) {
	s := fakememcached.Start(t)
	s.MaxItemSize = 64 << 20
	b2 := memcachebackend.New(memcache.New(s.Addr()), memcachebackend.MaxItemSize(64<<20))
	ns := testenv.NS(t, "abandon")
	val := make([]byte, 4<<20) // too slow to write within 1 µs
	for i := range val {
		val[i] = 'a'
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Microsecond)
	err := b2.Set(ctx, ns+":k", val, time.Minute)
	cancel()
	for i := range val {
		val[i] = 'X'
	}
	if err == nil {
		t.Skip("the Set completed within 1 µs")
	}
	// Whatever landed is the original value or nothing.
	time.Sleep(200 * time.Millisecond)
	v, ok, err := b2.Get(context.Background(), ns+":k")
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		for _, x := range v {
			if x != 'a' {
				t.Fatalf("the abandoned Set stored bytes the caller wrote after Set returned")
			}
		}
	}
}

// TestStalledServerShortClientTimeout: with a client Timeout short enough
// for requests to run on the caller's goroutine, ctx's deadline still
// bounds every method against a server that never answers.
func TestStalledServerShortClientTimeout(t *testing.T) {
	s := fakememcached.Start(t)
	c := memcache.New(s.Addr())
	c.Timeout = 30 * time.Millisecond
	b := memcachebackend.New(c, memcachebackend.GenerationRefresh(time.Hour))
	ns := testenv.NS(t, "stallshort")
	if err := b.Set(context.Background(), ns+":k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Stall()
	for _, o := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := o.call(ctx, b, ns+":k")
		el := time.Since(start)
		cancel()
		if err == nil {
			t.Errorf("%s on a stalled server = nil error", o.name)
		}
		if el > 100*time.Millisecond+slack {
			t.Errorf("%s on a stalled server returned after %v, past the 100ms deadline", o.name, el)
		}
	}
}
