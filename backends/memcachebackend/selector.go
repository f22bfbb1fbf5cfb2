package memcachebackend

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"
)

// Rendezvous is a [memcache.ServerSelector] that spreads keys over a pool
// of Memcached servers by rendezvous hashing (highest random weight): each
// key goes to the server that scores highest for it, the score being a
// fixed hash of the key and the server's name. Unlike
// [memcache.ServerList], which takes a hash of the key modulo the number of
// servers and so moves most keys when a server is added or removed,
// Rendezvous moves only the keys it must:
//
//   - adding a server to a pool of N moves about 1/(N+1) of the keys, all
//     of them to the new server (the others keep their server);
//   - removing a server moves only the keys it held, spread evenly over
//     the others;
//   - each of N servers gets about 1/N of the keys.
//
// The mapping from key to server depends only on the key and on the set of
// server names, as given to [NewRendezvous] or [Rendezvous.SetServers]:
// not on their order, not on the process (there is no random seed), not on
// what the names resolve to. Every process sharing the pool must name each
// server by the same string ("10.0.0.1:11211" and "mc1:11211" are
// different names, and so are different places for a key), in any order.
// The hash is part of this contract and will not change: score(key,
// server) = fmix64(fnv1a64(key) ^ fmix64(fnv1a64(server name))), where
// fnv1a64 is 64-bit FNV-1a and fmix64 MurmurHash3's 64-bit finalizer; a
// tie goes to the lesser name.
//
// PickServer costs a hash of the key and a few nanoseconds per server, and
// makes no allocation: fine for pools of tens of servers. All servers get
// the same weight.
//
// A Rendezvous is safe for concurrent use by multiple goroutines:
// PickServer and Each take no lock and see the server set as it was when
// they started; SetServers replaces the set atomically. Its zero value is
// usable and has no servers. It must not be copied after first use.
type Rendezvous struct {
	p atomic.Pointer[rendezvousPool]
}

var _ memcache.ServerSelector = (*Rendezvous)(nil)

// rendezvousPool is an immutable server set.
type rendezvousPool struct {
	byName  []*rendezvousServer // sorted by name: ties go to the first
	byOrder []*rendezvousServer // as given, for Each and Servers
}

type rendezvousServer struct {
	name string // as given: the server's identity in the hash
	seed uint64 // fmix64(fnv1a64(name))
	addr net.Addr
}

// serverAddr is a resolved address with its Network and String computed
// once, as gomemcache calls both on every request.
type serverAddr struct {
	network, str string
}

func (a *serverAddr) Network() string { return a.network }
func (a *serverAddr) String() string  { return a.str }

// NewRendezvous returns a [Rendezvous] over the servers named, as
// [Rendezvous.SetServers] sets them. With no servers, PickServer returns
// [memcache.ErrNoServers] until SetServers gives some.
func NewRendezvous(servers ...string) (*Rendezvous, error) {
	r := new(Rendezvous)
	if err := r.SetServers(servers...); err != nil {
		return nil, err
	}
	return r, nil
}

// NewRendezvousClient returns a [memcache.Client] that spreads keys over
// servers with a [Rendezvous], and that Rendezvous, whose SetServers
// changes the client's servers at run time. Set the client's Timeout and
// MaxIdleConns before use, as for [memcache.New]:
//
//	mc, pool, err := memcachebackend.NewRendezvousClient("10.0.0.1:11211", "10.0.0.2:11211")
//	if err != nil { ... }
//	mc.MaxIdleConns = 64
//	mc.Timeout = 40 * time.Millisecond
//	b := memcachebackend.New(mc)
//
// It returns the error of [NewRendezvous]; it makes no request.
func NewRendezvousClient(servers ...string) (*memcache.Client, *Rendezvous, error) {
	r, err := NewRendezvous(servers...)
	if err != nil {
		return nil, nil, err
	}
	return memcache.NewFromSelector(r), r, nil
}

// SetServers replaces the pool's servers. Each is "host:port", or a path
// (holding a '/') for a Unix socket; names are resolved now, once, as
// [memcache.ServerList.SetServers] does, and a server's name as given (not
// what it resolves to) decides which keys it holds. Order does not matter.
// It returns an error, and changes nothing, when a name is empty or does
// not resolve, or when two names are equal or resolve to the same address.
// No servers at all is allowed: PickServer then returns
// [memcache.ErrNoServers]. A client's idle connections to a server no
// longer listed stay open until the client is closed.
func (r *Rendezvous) SetServers(servers ...string) error {
	p := &rendezvousPool{byOrder: make([]*rendezvousServer, 0, len(servers))}
	names := make(map[string]bool, len(servers))
	addrs := make(map[serverAddr]string, len(servers))
	for _, name := range servers {
		if name == "" {
			return errors.New("memcachebackend: Rendezvous: empty server name")
		}
		if names[name] {
			return fmt.Errorf("memcachebackend: Rendezvous: server %q listed twice", name)
		}
		names[name] = true
		addr, err := resolve(name)
		if err != nil {
			return fmt.Errorf("memcachebackend: Rendezvous: server %q: %w", name, err)
		}
		if other, ok := addrs[*addr]; ok {
			return fmt.Errorf("memcachebackend: Rendezvous: servers %q and %q are the same address %s", other, name, addr.str)
		}
		addrs[*addr] = name
		p.byOrder = append(p.byOrder, &rendezvousServer{name: name, seed: fmix64(fnv1a64(name)), addr: addr})
	}
	p.byName = slices.Clone(p.byOrder)
	slices.SortFunc(p.byName, func(a, b *rendezvousServer) int { return strings.Compare(a.name, b.name) })
	r.p.Store(p)
	return nil
}

func resolve(name string) (*serverAddr, error) {
	if strings.Contains(name, "/") {
		a, err := net.ResolveUnixAddr("unix", name)
		if err != nil {
			return nil, err
		}
		return &serverAddr{a.Network(), a.String()}, nil
	}
	a, err := net.ResolveTCPAddr("tcp", name)
	if err != nil {
		return nil, err
	}
	return &serverAddr{a.Network(), a.String()}, nil
}

// PickServer returns the address of the server that holds key: the one
// with the highest score for it. It returns [memcache.ErrNoServers] when
// the pool is empty.
func (r *Rendezvous) PickServer(key string) (net.Addr, error) {
	p := r.p.Load()
	if p == nil || len(p.byName) == 0 {
		return nil, memcache.ErrNoServers
	}
	s := p.byName
	if len(s) == 1 {
		return s[0].addr, nil
	}
	kh := fnv1a64(key)
	best, top := 0, fmix64(kh^s[0].seed)
	for i := 1; i < len(s); i++ {
		if w := fmix64(kh ^ s[i].seed); w > top {
			best, top = i, w
		}
	}
	return s[best].addr, nil
}

// Each calls f with the address of each server, in the order given, and
// stops at the first error, which it returns. gomemcache uses it for
// Ping and FlushAll.
func (r *Rendezvous) Each(f func(net.Addr) error) error {
	p := r.p.Load()
	if p == nil {
		return nil
	}
	for _, s := range p.byOrder {
		if err := f(s.addr); err != nil {
			return err
		}
	}
	return nil
}

// Servers returns the names of the pool's servers, in the order given.
func (r *Rendezvous) Servers() []string {
	p := r.p.Load()
	if p == nil {
		return nil
	}
	names := make([]string, len(p.byOrder))
	for i, s := range p.byOrder {
		names[i] = s.name
	}
	return names
}

// fnv1a64 is the 64-bit FNV-1a hash of s.
func fnv1a64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finalizer: a bijection in which every
// input bit affects every output bit.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
