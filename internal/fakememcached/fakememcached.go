// Package fakememcached is an in-process Memcached server for tests: it
// speaks the subset of the text protocol that github.com/bradfitz/gomemcache
// uses (get, gets, gat, gats, set, add, replace, append, prepend, cas,
// delete, incr, decr, touch, flush_all, version) with Memcached's expiry
// rules (whole seconds, relative up to 30 days, absolute beyond, negative
// means expired) and its item size limit. It keeps everything in one map
// and never evicts.
package fakememcached

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultMaxItemSize is the item size limit of a [Server] unless set
// otherwise: Memcached's default (-I 1m).
const DefaultMaxItemSize = 1 << 20

// itemOverhead is what the fake counts beside key and value against the
// item size limit (memcached 1.6 counts about 50-60 bytes).
const itemOverhead = 48

const maxRelative = 30 * 24 * 60 * 60

type item struct {
	value []byte
	flags uint32
	exp   time.Time // zero: no expiry
	cas   uint64
}

// Server is a fake Memcached listening on a loopback port. Its methods are
// safe for concurrent use.
type Server struct {
	// MaxItemSize is the item size limit; set it before the first request.
	MaxItemSize int

	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	now    func() time.Time
	items  map[string]*item
	nextID uint64
	conns  map[net.Conn]struct{}
	closed bool
	stall  bool
	done   chan struct{} // closed by Close
}

// Start starts a server on 127.0.0.1 and stops it when tb's test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fakememcached: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen starts a server on addr ("127.0.0.1:0" picks a free port).
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		MaxItemSize: DefaultMaxItemSize,
		ln:          ln,
		now:         time.Now,
		items:       map[string]*item{},
		conns:       map[net.Conn]struct{}{},
		done:        make(chan struct{}),
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr returns the address the server listens on, for memcache.New.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetClock replaces the server's clock (time.Now by default), which
// decides expiry.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Stall makes the server stop answering: from then on it accepts
// connections and reads requests but sends nothing back, as a server that
// hangs does, until Close.
func (s *Server) Stall() {
	s.mu.Lock()
	s.stall = true
	s.mu.Unlock()
}

func (s *Server) stalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stall
}

// Len returns the number of items stored, expired ones included.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Close stops the server: it closes the listener and every connection and
// waits for their goroutines to end.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

var errClose = errors.New("close connection")

func (s *Server) handle(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if s.stalled() {
			<-s.done
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if err := s.command(r, w, strings.Fields(line)); err != nil {
			w.Flush()
			return
		}
		if w.Flush() != nil {
			return
		}
	}
}

// command runs one command and writes its answer to w.
func (s *Server) command(r *bufio.Reader, w *bufio.Writer, f []string) error {
	if len(f) == 0 {
		fmt.Fprint(w, "ERROR\r\n")
		return nil
	}
	switch cmd := f[0]; cmd {
	case "get", "gets":
		return s.get(w, f[1:], cmd == "gets", nil)
	case "gat", "gats":
		if len(f) < 3 {
			return clientError(w, "bad command line format")
		}
		exp, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return clientError(w, "bad command line format")
		}
		return s.get(w, f[2:], cmd == "gats", &exp)
	case "set", "add", "replace", "append", "prepend", "cas":
		return s.store(r, w, cmd, f[1:])
	case "delete":
		if len(f) < 2 {
			return clientError(w, "bad command line format")
		}
		s.mu.Lock()
		_, ok := s.live(f[1])
		delete(s.items, f[1])
		s.mu.Unlock()
		return reply(w, f, ok, "DELETED", "NOT_FOUND")
	case "incr", "decr":
		if len(f) < 3 {
			return clientError(w, "bad command line format")
		}
		delta, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return clientError(w, "invalid numeric delta argument")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		it, ok := s.live(f[1])
		if !ok {
			return reply(w, f, false, "", "NOT_FOUND")
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(it.value)), 10, 64)
		if err != nil {
			return clientError(w, "cannot increment or decrement non-numeric value")
		}
		if cmd == "incr" {
			n += delta
		} else if delta > n {
			n = 0
		} else {
			n -= delta
		}
		it.value = strconv.AppendUint(nil, n, 10)
		s.nextID++
		it.cas = s.nextID
		return reply(w, f, true, strconv.FormatUint(n, 10), "")
	case "touch":
		if len(f) < 3 {
			return clientError(w, "bad command line format")
		}
		exp, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return clientError(w, "invalid exptime argument")
		}
		s.mu.Lock()
		it, ok := s.live(f[1])
		if ok {
			it.exp = s.expiry(exp)
		}
		s.mu.Unlock()
		return reply(w, f, ok, "TOUCHED", "NOT_FOUND")
	case "flush_all":
		s.mu.Lock()
		clear(s.items)
		s.mu.Unlock()
		return reply(w, f, true, "OK", "")
	case "version":
		fmt.Fprint(w, "VERSION 1.6.0-fake\r\n")
		return nil
	case "quit":
		return errClose
	default:
		fmt.Fprint(w, "ERROR\r\n")
		return nil
	}
}

// reply writes yes or no, unless the command ends in "noreply".
func reply(w *bufio.Writer, f []string, ok bool, yes, no string) error {
	if f[len(f)-1] == "noreply" {
		return nil
	}
	if ok {
		fmt.Fprintf(w, "%s\r\n", yes)
	} else {
		fmt.Fprintf(w, "%s\r\n", no)
	}
	return nil
}

func clientError(w *bufio.Writer, msg string) error {
	fmt.Fprintf(w, "CLIENT_ERROR %s\r\n", msg)
	return nil
}

func (s *Server) get(w *bufio.Writer, keys []string, withCAS bool, touch *int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		it, ok := s.live(k)
		if !ok {
			continue
		}
		if touch != nil {
			it.exp = s.expiry(*touch)
		}
		if withCAS {
			fmt.Fprintf(w, "VALUE %s %d %d %d\r\n", k, it.flags, len(it.value), it.cas)
		} else {
			fmt.Fprintf(w, "VALUE %s %d %d\r\n", k, it.flags, len(it.value))
		}
		w.Write(it.value)
		w.WriteString("\r\n")
	}
	w.WriteString("END\r\n")
	return nil
}

func (s *Server) store(r *bufio.Reader, w *bufio.Writer, cmd string, f []string) error {
	args := 4
	if cmd == "cas" {
		args = 5
	}
	if len(f) < args {
		return clientError(w, "bad command line format")
	}
	key := f[0]
	flags, err1 := strconv.ParseUint(f[1], 10, 32)
	exp, err2 := strconv.ParseInt(f[2], 10, 64)
	size, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || size < 0 || len(key) > 250 {
		return clientError(w, "bad command line format")
	}
	var casID uint64
	if cmd == "cas" {
		var err error
		if casID, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			return clientError(w, "bad command line format")
		}
	}
	data := make([]byte, size+2)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		return clientError(w, "bad data chunk")
	}
	data = data[:size]
	all := append([]string{cmd}, f...)
	if len(key)+size+itemOverhead > s.MaxItemSize {
		// Memcached drops the old value too.
		s.mu.Lock()
		delete(s.items, key)
		s.mu.Unlock()
		fmt.Fprint(w, "SERVER_ERROR object too large for cache\r\n")
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.live(key)
	put := func(v []byte) {
		s.nextID++
		s.items[key] = &item{value: v, flags: uint32(flags), exp: s.expiry(exp), cas: s.nextID}
	}
	switch cmd {
	case "set":
		put(data)
	case "add":
		if exists {
			return reply(w, all, false, "", "NOT_STORED")
		}
		put(data)
	case "replace":
		if !exists {
			return reply(w, all, false, "", "NOT_STORED")
		}
		put(data)
	case "append", "prepend":
		if !exists {
			return reply(w, all, false, "", "NOT_STORED")
		}
		v := append([]byte(nil), old.value...)
		if cmd == "append" {
			v = append(v, data...)
		} else {
			v = append(append([]byte(nil), data...), old.value...)
		}
		old.value = v
		s.nextID++
		old.cas = s.nextID
	case "cas":
		if !exists {
			return reply(w, all, false, "", "NOT_FOUND")
		}
		if old.cas != casID {
			return reply(w, all, false, "", "EXISTS")
		}
		put(data)
	}
	return reply(w, all, true, "STORED", "")
}

// live returns the item under key unless it is missing or expired (and
// then drops it). s.mu is held.
func (s *Server) live(key string) (*item, bool) {
	it, ok := s.items[key]
	if !ok {
		return nil, false
	}
	if !it.exp.IsZero() && !s.now().Before(it.exp) {
		delete(s.items, key)
		return nil, false
	}
	return it, true
}

// expiry converts an exptime to an instant, as Memcached reads it: 0 no
// expiry, negative already expired, up to 30 days relative seconds,
// beyond an absolute Unix time. s.mu is held.
func (s *Server) expiry(exp int64) time.Time {
	switch {
	case exp == 0:
		return time.Time{}
	case exp < 0:
		return time.Unix(1, 0)
	case exp <= maxRelative:
		return s.now().Add(time.Duration(exp) * time.Second)
	default:
		return time.Unix(exp, 0)
	}
}
