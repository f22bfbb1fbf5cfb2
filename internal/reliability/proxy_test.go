package reliability_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy is a loopback TCP proxy between memo's client and a real server
// that can pass traffic through, delay every reply, or go silent: accept
// connections and read requests but never answer (and never forward).
// The mode applies to connections already open as well as to new ones.
type proxy struct {
	ln       net.Listener
	upstream string
	delay    time.Duration
	mode     atomic.Int32
	closed   chan struct{}
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
	active   atomic.Int64 // the proxy's own goroutines, left out of the counts
}

const (
	modePass int32 = iota
	modeSlow
	modeSilent
)

var modeNames = map[int32]string{modePass: "pass", modeSlow: "slow", modeSilent: "silent"}

// newProxy listens on a free loopback port and forwards to upstream. It is
// closed, with every connection it holds, when t ends.
func newProxy(t testing.TB, upstream string, delay time.Duration) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, delay: delay, closed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	p.active.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) Addr() string    { return p.ln.Addr().String() }
func (p *proxy) setMode(m int32) { p.mode.Store(m) }
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		c.Close()
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

// Close stops the proxy and waits for its goroutines.
func (p *proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) serve() {
	defer p.done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		p.active.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) done() {
	p.active.Add(-1)
	p.wg.Done()
}

func (p *proxy) handle(c net.Conn) {
	defer p.done()
	var u net.Conn
	if p.mode.Load() != modeSilent {
		var err error
		if u, err = net.DialTimeout("tcp", p.upstream, time.Second); err != nil || !p.track(u) {
			c.Close()
			return
		}
	}
	if u == nil {
		// Silent from the start: swallow requests until the client leaves.
		p.pipe(nil, c, false)
		return
	}
	p.wg.Add(1)
	p.active.Add(1)
	go func() {
		defer p.done()
		p.pipe(c, u, true) // replies
	}()
	p.pipe(u, c, false) // requests
}

// pipe copies src to dst until either fails, then closes both. Silent mode
// drops the bytes; slow mode holds each reply for the proxy's delay.
func (p *proxy) pipe(dst, src net.Conn, reply bool) {
	defer func() {
		src.Close()
		if dst != nil {
			dst.Close()
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil {
			switch p.mode.Load() {
			case modeSilent:
				// read and never answer
			case modeSlow:
				if reply {
					select {
					case <-time.After(p.delay):
					case <-p.closed:
						return
					}
				}
				fallthrough
			default:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
