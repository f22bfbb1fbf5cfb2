package faultproxy_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gomemo/memo/internal/faultproxy"
	"github.com/gomemo/memo/internal/testenv"
)

// TestMain checks that no test leaves a goroutine behind, the proxies'
// included (they close in t.Cleanup, before this runs).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// silence is how long a read waits to conclude that no answer comes. It
// only ever decides that a stalled connection stayed silent, which it
// does forever: a slow machine cannot make a test fail through it.
const silence = 200 * time.Millisecond

// conn is a client connection speaking RESP through the proxy.
type conn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial(%s) error = %v, want nil", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

// ping sends a PING.
func (c *conn) ping() {
	c.t.Helper()
	if _, err := c.c.Write([]byte("PING\r\n")); err != nil {
		c.t.Fatalf("writing PING: %v", err)
	}
}

// read returns the next line, waiting at most d.
func (c *conn) read(d time.Duration) (string, error) {
	c.c.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadString('\n')
}

// wantPong fails the test unless +PONG comes.
func (c *conn) wantPong(what string) {
	c.t.Helper()
	if got, err := c.read(5 * time.Second); got != "+PONG\r\n" || err != nil {
		c.t.Fatalf("%s: read = %q, %v; want \"+PONG\\r\\n\", nil", what, got, err)
	}
}

// wantSilence fails the test if anything comes within silence.
func (c *conn) wantSilence(what string) {
	c.t.Helper()
	got, err := c.read(silence)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("%s: read = %q, %v; want nothing (a timeout)", what, got, err)
	}
}

// wantReset fails the test unless the connection was reset by the proxy.
func (c *conn) wantReset(what string) {
	c.t.Helper()
	got, err := c.read(5 * time.Second)
	if !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("%s: read = %q, %v; want ECONNRESET", what, got, err)
	}
}

func redisAddr(t *testing.T) string { return testenv.Require(t, "MEMO_REDIS_ADDR") }

// TestForward: PINGs pass through on several connections.
func TestForward(t *testing.T) {
	p := faultproxy.New(t, redisAddr(t))
	if p.Mode() != faultproxy.Forward {
		t.Fatalf("New: Mode() = %v, want forward", p.Mode())
	}
	for range 3 {
		c := dial(t, p.Addr())
		for range 2 {
			c.ping()
			c.wantPong("forward")
		}
	}
}

// TestStall: a connection open before the stall and one opened during it
// both go unanswered; once the proxy forwards again, the PINGs it held
// are answered, in order, and new ones too.
func TestStall(t *testing.T) {
	p := faultproxy.New(t, redisAddr(t))
	before := dial(t, p.Addr())
	before.ping()
	before.wantPong("forward")

	p.Set(faultproxy.Stall)
	before.ping()
	before.wantSilence("stall, connection opened before")
	during := dial(t, p.Addr()) // the port still accepts
	during.ping()
	during.wantSilence("stall, connection opened during")

	p.Set(faultproxy.Forward)
	before.wantPong("forward again, held PING")
	during.wantPong("forward again, held PING")
	for _, c := range []*conn{before, during, dial(t, p.Addr())} {
		c.ping()
		c.wantPong("forward again, new PING")
	}
}

// TestRefuse: existing connections are reset, even a stalled one, new ones
// are refused; once the proxy forwards again the same address answers.
func TestRefuse(t *testing.T) {
	for _, from := range []faultproxy.Mode{faultproxy.Forward, faultproxy.Stall} {
		t.Run(from.String(), func(t *testing.T) {
			p := faultproxy.New(t, redisAddr(t))
			c := dial(t, p.Addr())
			c.ping()
			c.wantPong("forward")
			p.Set(from)
			if from == faultproxy.Stall {
				c.ping() // held when the reset comes
			}

			p.Set(faultproxy.Refuse)
			c.wantReset("refuse, existing connection")
			if nc, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				if nc != nil {
					nc.Close()
				}
				t.Fatalf("refuse: Dial(%s) error = %v, want ECONNREFUSED", p.Addr(), err)
			}

			p.Set(faultproxy.Forward)
			c = dial(t, p.Addr())
			c.ping()
			c.wantPong("forward after refuse")
		})
	}
}

// TestClose: Close resets nothing twice and leaves the port closed; every
// goroutine is gone (TestMain).
func TestClose(t *testing.T) {
	p := faultproxy.New(t, redisAddr(t))
	c := dial(t, p.Addr())
	p.Set(faultproxy.Stall)
	c.ping()
	p.Close()
	p.Close()
	p.Set(faultproxy.Forward) // does nothing
	if got, err := c.read(5 * time.Second); err == nil {
		t.Fatalf("after Close: read = %q, nil; want an error", got)
	}
	if nc, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		nc.Close()
		t.Fatalf("after Close: Dial(%s) error = nil, want one", p.Addr())
	}
}

// TestUpstreamDown: with nothing listening upstream, the client's
// connection is closed at once.
func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := faultproxy.New(t, dead)
	c := dial(t, p.Addr())
	c.ping()
	if got, err := c.read(5 * time.Second); err == nil {
		t.Fatalf("upstream down: read = %q, nil; want an error", got)
	}
}

// TestGoRedis: a go-redis client through the proxy, as memo's tests use
// it: its calls fail within their deadline while the proxy stalls or
// refuses, and succeed again once it forwards.
func TestGoRedis(t *testing.T) {
	p := faultproxy.New(t, redisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ping := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}
	for i, step := range []struct {
		mode faultproxy.Mode
		ok   bool
	}{
		{faultproxy.Forward, true},
		{faultproxy.Stall, false},
		{faultproxy.Forward, true},
		{faultproxy.Refuse, false},
		{faultproxy.Forward, true},
		{faultproxy.Stall, false},
		{faultproxy.Refuse, false},
		{faultproxy.Forward, true},
	} {
		p.Set(step.mode)
		for range 3 {
			if err := ping(); (err == nil) != step.ok {
				t.Fatalf("step %d, %v: Ping() error = %v, want ok %v", i, step.mode, err, step.ok)
			}
		}
	}
}
