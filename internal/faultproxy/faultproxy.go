// Package faultproxy is a loopback TCP proxy for tests, in front of a real
// server, that the test switches at any time between forwarding, stalling
// and refusing: a way to make a working Redis (or any TCP server) look
// stalled or down, and then recover, without touching the server.
//
//	p := faultproxy.New(t, os.Getenv("MEMO_REDIS_ADDR"))
//	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ...})
//	p.Set(faultproxy.Stall)   // every request hangs
//	p.Set(faultproxy.Refuse)  // connections reset, the port refuses
//	p.Set(faultproxy.Forward) // back to normal
package faultproxy

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Mode is what a [Proxy] does with connections and bytes.
type Mode int

const (
	// Forward passes bytes both ways, on new and existing connections.
	Forward Mode = iota

	// Stall accepts connections and keeps them open but passes no byte
	// either way, on new and existing connections alike, like a frozen
	// server or a network partition: requests go unanswered. The bytes
	// the proxy has read meanwhile are held, not dropped: they are passed
	// on, in order, when the proxy forwards again (as TCP would deliver
	// them after a partition heals), unless the connection is closed or
	// reset first.
	Stall

	// Refuse closes the listening socket, so that new connections are
	// refused as by a closed port, and resets the existing ones (the
	// client reads ECONNRESET). Switching back to Forward or Stall
	// listens again on the same address.
	Refuse
)

// String returns "forward", "stall" or "refuse".
func (m Mode) String() string {
	switch m {
	case Forward:
		return "forward"
	case Stall:
		return "stall"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy is a TCP proxy on a loopback port in front of one upstream server.
// Its methods are safe for concurrent use. Create it with [New].
type Proxy struct {
	t        testing.TB
	upstream string
	addr     string

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every change of mode
	ln      net.Listener  // nil while refusing
	conns   map[*pair]struct{}
	closed  bool

	ctx    context.Context // ends when the proxy closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// pair is one proxied connection: the client's and the proxy's to upstream.
type pair struct{ client, up net.Conn }

// New starts a proxy to upstream ("host:port") on 127.0.0.1 and a free
// port, in Forward mode. The proxy dials upstream for each connection it
// accepts, in every mode but Refuse. It is closed when t ends (see
// [Proxy.Close]). New fails t when it cannot listen.
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		t: t, upstream: upstream, addr: ln.Addr().String(),
		changed: make(chan struct{}), ln: ln, conns: map[*pair]struct{}{},
		ctx: ctx, cancel: cancel,
	}
	p.wg.Add(1)
	go p.serve(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr returns the address clients connect to, "127.0.0.1:<port>". It
// stays the same through every mode.
func (p *Proxy) Addr() string { return p.addr }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches the proxy to mode m, for new and existing connections,
// and returns when the switch has taken effect: after Set(Refuse) the port
// refuses connections and every earlier connection has been reset; after
// Set(Forward) or Set(Stall) from Refuse the port accepts again. When the
// port cannot be listened on again (another process took it), Set reports
// it with t.Errorf and the proxy keeps refusing. Set on a closed proxy
// does nothing.
func (p *Proxy) Set(m Mode) {
	if m != Forward && m != Stall && m != Refuse {
		panic(fmt.Sprintf("faultproxy: Set(%v): no such mode", m))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || m == p.mode {
		return
	}
	switch {
	case m == Refuse:
		p.ln.Close()
		p.ln = nil
		for c := range p.conns {
			c.reset()
		}
		clear(p.conns)
	case p.mode == Refuse:
		ln, err := listenAgain(p.addr)
		if err != nil {
			p.t.Errorf("faultproxy: Set(%v): listening again on %s: %v", m, p.addr, err)
			return
		}
		p.ln = ln
		p.wg.Add(1)
		go p.serve(ln)
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
}

// listenAgain listens on addr, which the proxy has just closed, retrying
// for a moment in case the kernel has not released it yet.
func listenAgain(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}

// Close stops the proxy: it closes the listening socket and every
// connection, and waits for the proxy's goroutines to end. It is safe to
// call more than once; New arranges for it to run when t ends.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.cancel()
		if p.ln != nil {
			p.ln.Close()
			p.ln = nil
		}
		for c := range p.conns {
			c.client.Close()
			c.up.Close()
		}
		clear(p.conns)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// reset closes both connections, the client's with an RST.
func (c *pair) reset() {
	if tc, ok := c.client.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.client.Close()
	c.up.Close()
}

// serve accepts connections on ln until it is closed.
func (p *Proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle dials upstream for the client connection c and copies bytes both
// ways as the mode allows, until either side closes.
func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		if p.ctx.Err() == nil {
			p.t.Logf("faultproxy: dialing %s: %v", p.upstream, err)
		}
		c.Close()
		return
	}
	pr := &pair{client: c, up: up}
	p.mu.Lock()
	if p.closed || p.mode == Refuse {
		p.mu.Unlock()
		pr.reset()
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(c, up) // replies
	}()
	p.pipe(up, c) // requests

	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

// pipe copies src to dst, holding each chunk read while the proxy stalls,
// until either fails or the connection is reset; then it closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		src.Close()
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if !p.waitForward() {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

// waitForward returns true once the proxy forwards, and false if it
// refuses (the connection is being reset) or closes first.
func (p *Proxy) waitForward() bool {
	for {
		p.mu.Lock()
		m, ch, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == Refuse:
			return false
		case m == Forward:
			return true
		}
		select {
		case <-ch:
		case <-p.ctx.Done():
			return false
		}
	}
}
