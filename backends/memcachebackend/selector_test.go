package memcachebackend_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/fakememcached"
	"github.com/gomemo/memo/internal/testenv"
)

// rvNumKeys is the number of keys the distribution tests spread.
const rvNumKeys = 10_000

// rvKeys returns n keys shaped as memcachebackend stores memo's keys
// ("<prefix>:<ns>:g<generation>.<id>"), over a few namespaces.
func rvKeys(n int) []string {
	nss := []string{"memo:main.getUser", "memo:billing.invoice", "app:v2:search"}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:g%x.%d", nss[i%len(nss)], 0x2b4c6d8e1f+i%7, i)
	}
	return keys
}

// rvNames returns n server names, "10.0.0.1:11211" and on.
func rvNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("10.0.0.%d:11211", i+1)
	}
	return names
}

func mustRendezvous(t testing.TB, servers ...string) *memcachebackend.Rendezvous {
	t.Helper()
	r, err := memcachebackend.NewRendezvous(servers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rvMapping returns the address PickServer gives each key.
func rvMapping(t testing.TB, sel memcache.ServerSelector, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		a, err := sel.PickServer(k)
		if err != nil {
			t.Fatalf("PickServer(%q): %v", k, err)
		}
		out[i] = a.String()
	}
	return out
}

// rvCounts returns how many keys each server got.
func rvCounts(m []string) map[string]int {
	c := map[string]int{}
	for _, s := range m {
		c[s]++
	}
	return c
}

// TestRendezvousAddServer: going from N to N+1 servers moves between
// 0.7/(N+1) and 1.3/(N+1) of the keys, every one of them to the new server;
// gomemcache's ServerList, for comparison, moves most of them.
func TestRendezvousAddServer(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	for n := 2; n <= 8; n++ {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			names := rvNames(n + 1)
			before := rvMapping(t, mustRendezvous(t, names[:n]...), keys)
			after := rvMapping(t, mustRendezvous(t, names...), keys)
			newAddr := names[n]
			moved := 0
			for i := range keys {
				if before[i] == after[i] {
					continue
				}
				moved++
				if after[i] != newAddr {
					t.Errorf("key %q moved from %s to %s, not to the new server %s", keys[i], before[i], after[i], newAddr)
				}
			}
			frac, ideal := float64(moved)/rvNumKeys, 1/float64(n+1)
			if frac < 0.7*ideal || frac > 1.3*ideal {
				t.Errorf("adding a server to %d moved %.4f of the keys, want %.4f ± 30%%", n, frac, ideal)
			}
			var sl memcache.ServerList
			if err := sl.SetServers(names[:n]...); err != nil {
				t.Fatal(err)
			}
			slBefore := rvMapping(t, &sl, keys)
			if err := sl.SetServers(names...); err != nil {
				t.Fatal(err)
			}
			slMoved := 0
			for i, a := range rvMapping(t, &sl, keys) {
				if a != slBefore[i] {
					slMoved++
				}
			}
			t.Logf("%d -> %d servers: rendezvous moved %.4f of the keys (ideal %.4f), ServerList %.4f",
				n, n+1, frac, ideal, float64(slMoved)/rvNumKeys)
		})
	}
}

// TestRendezvousRemoveServer: removing a server moves only the keys it
// held, and spreads them over all the others.
func TestRendezvousRemoveServer(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	for n := 3; n <= 8; n++ {
		names := rvNames(n)
		before := rvMapping(t, mustRendezvous(t, names...), keys)
		for gone := range n {
			t.Run(fmt.Sprintf("N=%d/remove=%d", n, gone), func(t *testing.T) {
				rest := slices.Delete(slices.Clone(names), gone, gone+1)
				after := rvMapping(t, mustRendezvous(t, rest...), keys)
				got := map[string]int{}
				for i := range keys {
					switch {
					case before[i] == names[gone]:
						got[after[i]]++
					case after[i] != before[i]:
						t.Errorf("key %q moved from %s to %s, though %s was removed", keys[i], before[i], after[i], names[gone])
					}
				}
				for _, s := range rest {
					if got[s] == 0 {
						t.Errorf("no key of the removed server went to %s: %v", s, got)
					}
				}
			})
		}
	}
}

// TestRendezvousBalance: over N servers each gets 1/N of the keys ± 15%.
func TestRendezvousBalance(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	for _, n := range []int{2, 3, 4, 5, 6, 7, 8, 16} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			names := rvNames(n)
			c := rvCounts(rvMapping(t, mustRendezvous(t, names...), keys))
			ideal := float64(rvNumKeys) / float64(n)
			worst := 0.0
			for _, s := range names {
				dev := (float64(c[s]) - ideal) / ideal
				worst = max(worst, dev, -dev)
				if dev < -0.15 || dev > 0.15 {
					t.Errorf("%s got %d keys, want %.0f ± 15%%", s, c[s], ideal)
				}
			}
			t.Logf("%d servers: largest deviation from 1/N %.1f%%", n, 100*worst)
		})
	}
}

// TestRendezvousOrderIndependent: the rvMapping depends on the set of
// names, not on their order.
func TestRendezvousOrderIndependent(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	names := rvNames(6)
	want := rvMapping(t, mustRendezvous(t, names...), keys)
	for _, order := range [][]int{{5, 4, 3, 2, 1, 0}, {2, 0, 5, 1, 4, 3}, {1, 0, 2, 3, 4, 5}} {
		perm := make([]string, len(order))
		for i, j := range order {
			perm[i] = names[j]
		}
		if diff := cmp.Diff(want, rvMapping(t, mustRendezvous(t, perm...), keys)); diff != "" {
			t.Errorf("servers %v map keys differently (-in order +permuted):\n%s", perm, diff)
		}
	}
}

// rvRefPick is the documented hash, written out again from its definition
// with the standard library's FNV-1a: fmix64(fnv1a64(key) ^
// fmix64(fnv1a64(name))), highest wins, a tie to the lesser name.
func rvRefPick(key string, names []string) string {
	h := func(s string) uint64 {
		f := fnv.New64a()
		f.Write([]byte(s))
		return f.Sum64()
	}
	fmix := func(x uint64) uint64 {
		x ^= x >> 33
		x *= 0xff51afd7ed558ccd
		x ^= x >> 33
		x *= 0xc4ceb9fe1a85ec53
		x ^= x >> 33
		return x
	}
	var best string
	var top uint64
	for _, n := range names {
		w := fmix(h(key) ^ fmix(h(n)))
		if best == "" || w > top || w == top && n < best {
			best, top = n, w
		}
	}
	return best
}

// TestRendezvousDocumentedHash: PickServer computes the hash its
// documentation states, so that the rvMapping can be reproduced (and any
// change to it, which would split a fleet, fails here).
func TestRendezvousDocumentedHash(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	names := rvNames(5)
	want := make([]string, len(keys))
	for i, k := range keys {
		want[i] = rvRefPick(k, names)
	}
	if diff := cmp.Diff(want, rvMapping(t, mustRendezvous(t, names...), keys)); diff != "" {
		t.Errorf("PickServer differs from the documented hash (-documented +PickServer):\n%s", diff)
	}
}

// TestRendezvousGolden pins picks and the digest of a rvMapping, so that
// the rvMapping cannot change between versions of memo: processes running
// different versions must agree on where a key lives.
func TestRendezvousGolden(t *testing.T) {
	r := mustRendezvous(t, "10.1.0.1:11211", "10.1.0.2:11211", "10.1.0.3:11212", "/run/memcached/d.sock")
	tests := []struct{ key, want string }{
		{"memo:main.getUser:g1.42", "10.1.0.1:11211"},
		{"memo:main.getUser:g2.42", "10.1.0.3:11212"},
		{"memo.gen.47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", "10.1.0.1:11211"},
		{"memo.h.LCa0a2j_xo_5m0U8HbBBNBNCLXBkg7-g-XMfVA3k7g0", "10.1.0.2:11211"},
		{"app:v2:search:g1c.q=go", "/run/memcached/d.sock"},
		{"a:b", "10.1.0.2:11211"},
		{"x", "10.1.0.2:11211"},
		{"", "10.1.0.3:11212"},
	}
	for _, tt := range tests {
		if got := rvPick(t, r, tt.key); got != tt.want {
			t.Errorf("PickServer(%q) = %s, want %s", tt.key, got, tt.want)
		}
	}
	const wantDigest = "0cddac07d2a6439e7dea4f2e992cbdb9f75c1a6e33b68fe445bfa69664ca8af5"
	if got := rvDigest(t, r, rvKeys(rvNumKeys)); got != wantDigest {
		t.Errorf("rvMapping digest = %s, want %s", got, wantDigest)
	}
}

// rvDigestEnv, when set, makes TestRendezvousSameInEveryProcess print the
// digest of its rvMapping for the servers it names (comma-separated) and
// return: the parent process re-executes the test binary with it.
const rvDigestEnv = "MEMO_TEST_RENDEZVOUS_DIGEST_SERVERS"

// rvDigest returns the SHA-256 of "key server\n" over keys.
func rvDigest(t testing.TB, r *memcachebackend.Rendezvous, keys []string) string {
	h := sha256.New()
	for i, a := range rvMapping(t, r, keys) {
		fmt.Fprintf(h, "%s %s\n", keys[i], a)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestRendezvousSameInEveryProcess re-executes the test binary (a real OS
// process, with its own runtime, hash seeds and address-space layout) and
// compares the digest of its rvMapping of 10,000 keys with this process's;
// the child is given the servers in another order.
func TestRendezvousSameInEveryProcess(t *testing.T) {
	keys := rvKeys(rvNumKeys)
	if v := os.Getenv(rvDigestEnv); v != "" {
		fmt.Printf("rendezvous-digest pid=%d %s\n", os.Getpid(), rvDigest(t, mustRendezvous(t, strings.Split(v, ",")...), keys))
		return
	}
	names := rvNames(7)
	want := rvDigest(t, mustRendezvous(t, names...), keys)
	rev := slices.Clone(names)
	slices.Reverse(rev)
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRendezvousSameInEveryProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), rvDigestEnv+"="+strings.Join(rev, ","))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, out)
		}
		var pid int
		var got string
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if n, _ := fmt.Sscanf(sc.Text(), "rendezvous-digest pid=%d %s", &pid, &got); n == 2 {
				break
			}
		}
		if got == "" {
			t.Fatalf("child %d printed no digest:\n%s", i, out)
		}
		if pid == os.Getpid() {
			t.Fatalf("child %d ran in this process (pid %d)", i, pid)
		}
		if got != want {
			t.Errorf("child %d (pid %d) maps keys to digest %s, this process (pid %d) to %s", i, pid, got, os.Getpid(), want)
		}
		t.Logf("child %d (pid %d, servers in reverse order): digest %s; this process (pid %d): %s", i, pid, got, os.Getpid(), want)
	}
}

// TestRendezvousNoServers: an empty pool answers memcache.ErrNoServers,
// however it came to be empty, and so does a client over it.
func TestRendezvousNoServers(t *testing.T) {
	emptied := mustRendezvous(t, "10.0.0.1:11211")
	if err := emptied.SetServers(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    *memcachebackend.Rendezvous
	}{
		{"zero value", new(memcachebackend.Rendezvous)},
		{"NewRendezvous()", mustRendezvous(t)},
		{"SetServers()", emptied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.r.PickServer("memo:ns:g1.k")
			if !errors.Is(err, memcache.ErrNoServers) || a != nil {
				t.Errorf("PickServer = %v, %v; want nil, memcache.ErrNoServers", a, err)
			}
			calls := 0
			if err := tt.r.Each(func(net.Addr) error { calls++; return nil }); err != nil || calls != 0 {
				t.Errorf("Each called f %d times and returned %v; want 0, nil", calls, err)
			}
			if s := tt.r.Servers(); len(s) != 0 {
				t.Errorf("Servers() = %q, want none", s)
			}
			mc := memcache.NewFromSelector(tt.r)
			if _, err := mc.Get("memo:ns:g1.k"); !errors.Is(err, memcache.ErrNoServers) {
				t.Errorf("client Get = %v, want memcache.ErrNoServers", err)
			}
		})
	}
	mc, _, err := memcachebackend.NewRendezvousClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}); !errors.Is(err, memcache.ErrNoServers) {
		t.Errorf("NewRendezvousClient() client Set = %v, want memcache.ErrNoServers", err)
	}
}

// TestRendezvousInvalidServers: SetServers refuses a list it cannot use,
// and then changes nothing.
func TestRendezvousInvalidServers(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		errHas  string
	}{
		{"empty name", []string{"10.0.0.1:11211", ""}, "empty server name"},
		{"listed twice", []string{"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.1:11211"}, "listed twice"},
		{"same address", []string{"127.0.0.1:11211", "[::ffff:127.0.0.1]:11211"}, "same address"},
		{"same address, other spelling", []string{"127.0.0.1:11211", "127.0.0.1:011211"}, "same address"},
		{"no port", []string{"10.0.0.1"}, "missing port"},
		{"bad port", []string{"10.0.0.1:99999"}, "invalid port"},
	}
	before := rvNames(3)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRendezvous(t, before...)
			want := rvMapping(t, r, rvKeys(100))
			err := r.SetServers(tt.servers...)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.HasPrefix(err.Error(), "memcachebackend: ") {
				t.Fatalf("SetServers(%q) = %v, want a memcachebackend error saying %q", tt.servers, err, tt.errHas)
			}
			if diff := cmp.Diff(before, r.Servers()); diff != "" {
				t.Errorf("servers changed by a failed SetServers (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(want, rvMapping(t, r, rvKeys(100))); diff != "" {
				t.Errorf("rvMapping changed by a failed SetServers:\n%s", diff)
			}
			if r2, err := memcachebackend.NewRendezvous(tt.servers...); err == nil || r2 != nil {
				t.Errorf("NewRendezvous(%q) = %v, %v; want nil and an error", tt.servers, r2, err)
			}
			if mc, r3, err := memcachebackend.NewRendezvousClient(tt.servers...); err == nil || mc != nil || r3 != nil {
				t.Errorf("NewRendezvousClient(%q) = %v, %v, %v; want nils and an error", tt.servers, mc, r3, err)
			}
		})
	}
}

// TestRendezvousEach: Each visits the servers in the order given, with
// the addresses PickServer returns, and stops at the first error.
func TestRendezvousEach(t *testing.T) {
	names := []string{"10.0.0.3:11211", "10.0.0.1:11211", "10.0.0.2:11211"}
	r := mustRendezvous(t, names...)
	var seen []string
	if err := r.Each(func(a net.Addr) error { seen = append(seen, a.Network()+" "+a.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"tcp 10.0.0.3:11211", "tcp 10.0.0.1:11211", "tcp 10.0.0.2:11211"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("Each (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(names, r.Servers()); diff != "" {
		t.Errorf("Servers (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	calls := 0
	if err := r.Each(func(net.Addr) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("Each with a failing f: %d calls, %v; want 1, %v", calls, err, stop)
	}
	u := mustRendezvous(t, "/run/memcached/a.sock", "10.0.0.1:11211")
	seen = nil
	u.Each(func(a net.Addr) error { seen = append(seen, a.Network()+" "+a.String()); return nil })
	if diff := cmp.Diff([]string{"unix /run/memcached/a.sock", "tcp 10.0.0.1:11211"}, seen); diff != "" {
		t.Errorf("Each over a Unix socket (-want +got):\n%s", diff)
	}
}

// TestRendezvousConcurrent runs PickServer, Each and Servers from many
// goroutines while SetServers switches between two server sets (run it
// with -race); every pick is a server of one of the sets.
func TestRendezvousConcurrent(t *testing.T) {
	setA, setB := rvNames(4), rvNames(7)[2:]
	union := map[string]bool{}
	for _, s := range append(slices.Clone(setA), setB...) {
		union[s] = true
	}
	r := mustRendezvous(t, setA...)
	keys := rvKeys(2000)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			set := setA
			if i%2 == 1 {
				set = setB
			}
			if err := r.SetServers(set...); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var picks sync.WaitGroup
	for g := range 8 {
		picks.Go(func() {
			for i := range 20_000 {
				k := keys[(g*7919+i)%len(keys)]
				a, err := r.PickServer(k)
				if err != nil || !union[a.String()] {
					t.Errorf("PickServer(%q) = %v, %v", k, a, err)
					return
				}
				if i%1000 == 0 {
					n := 0
					r.Each(func(net.Addr) error { n++; return nil })
					if s := len(r.Servers()); n != 4 && n != 5 || s != 4 && s != 5 {
						t.Errorf("Each saw %d servers and Servers %d, want 4 or 5", n, s)
					}
				}
			}
		})
	}
	picks.Wait()
	stop.Store(true)
	wg.Wait()
}

// rvPool is a set of fake memcached servers behind a Rendezvous.
type rvPool struct {
	fakes map[string]*fakememcached.Server // by address
	sel   *memcachebackend.Rendezvous
}

// startRVPool starts n fake servers (stopped when t ends) behind a Rendezvous.
func startRVPool(t *testing.T, n int) *rvPool {
	p := &rvPool{fakes: map[string]*fakememcached.Server{}}
	var names []string
	for range n {
		f := fakememcached.Start(t)
		p.fakes[f.Addr()] = f
		names = append(names, f.Addr())
	}
	p.sel = mustRendezvous(t, names...)
	return p
}

// client returns a new client over the pool's selector, closed when t ends.
func (p *rvPool) client(t *testing.T) *memcache.Client {
	mc := memcache.NewFromSelector(p.sel)
	mc.Timeout = 2 * time.Second
	mc.MaxIdleConns = 16
	t.Cleanup(func() { mc.Close() })
	return mc
}

// rvHolds reports whether the fake at addr holds key.
func rvHolds(t *testing.T, addr, key string) bool {
	t.Helper()
	mc := memcache.New(addr)
	defer mc.Close()
	_, err := mc.Get(key)
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatal(err)
	}
	return err == nil
}

// rvPick returns the address sel picks for key.
func rvPick(t testing.TB, sel memcache.ServerSelector, key string) string {
	t.Helper()
	a, err := sel.PickServer(key)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// TestRendezvousEndToEnd: two fake memcached servers behind the selector,
// memo over memcachebackend over it, in two "processes" (a client, a
// Backend and a memo.Func each). Values land on both servers, each where
// the selector says; the second process hits every key the first wrote;
// a namespace's generation counter lives on one server and Clear works
// whichever server rvHolds it, in both processes.
func TestRendezvousEndToEnd(t *testing.T) {
	p := startRVPool(t, 2)
	mc, sel, err := memcachebackend.NewRendezvousClient(p.sel.Servers()...)
	if err != nil {
		t.Fatal(err)
	}
	mc.Timeout = 2 * time.Second
	t.Cleanup(func() { mc.Close() })
	b1 := memcachebackend.New(mc)
	b2 := memcachebackend.New(p.client(t), memcachebackend.GenerationRefresh(0))

	// Namespaces until one has its counter on each server.
	counterOn := map[string]string{} // server -> namespace
	for i := 0; len(counterOn) < 2; i++ {
		if i == 64 {
			t.Fatalf("64 namespaces, counters only on %v", counterOn)
		}
		ns := testenv.NS(t, "pool")
		f := memo.New(func(context.Context, int) (string, error) { return "", nil }, memo.Namespace(ns), memo.WithBackend(b1))
		srv := rvPick(t, sel, memcachebackend.GenKey(f.Namespace()))
		if _, ok := counterOn[srv]; !ok {
			counterOn[srv] = ns
		}
	}
	const n = 200
	ctx := context.Background()
	for srv, ns := range counterOn {
		t.Run("counter on "+srv, func(t *testing.T) {
			var runs atomic.Int64
			fn := func(_ context.Context, id int) (string, error) {
				runs.Add(1)
				return fmt.Sprintf("v%d.%d", id, runs.Load()), nil
			}
			f1 := memo.New(fn, memo.Namespace(ns), memo.WithBackend(b1), memo.Timeout(2*time.Second))
			f2 := memo.New(fn, memo.Namespace(ns), memo.WithBackend(b2), memo.Timeout(2*time.Second))
			call := func(f *memo.Func[int, string]) []string {
				out := make([]string, n)
				for id := range n {
					v, err := f.Call(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					out[id] = v
				}
				return out
			}
			first := call(f1)
			if got := runs.Load(); got != n {
				t.Fatalf("fn ran %d times for %d cold keys", got, n)
			}
			gk := memcachebackend.GenKey(f1.Namespace())
			if !rvHolds(t, srv, gk) {
				t.Errorf("the counter %s is not on %s, where the selector puts it", gk, srv)
			}
			perServer := map[string]int{}
			for id := range n {
				sk, err := memcachebackend.StoredKey(ctx, b1, f1.Key(id))
				if err != nil {
					t.Fatal(err)
				}
				at := rvPick(t, sel, sk)
				perServer[at]++
				for addr := range p.fakes {
					if got, want := rvHolds(t, addr, sk), addr == at; got != want {
						t.Fatalf("key %s on %s: %v, want %v (the selector picks %s)", sk, addr, got, want, at)
					}
				}
			}
			for addr := range p.fakes {
				if perServer[addr] < n/4 {
					t.Errorf("%s rvHolds %d of %d values: %v", addr, perServer[addr], n, perServer)
				}
			}
			t.Logf("values per server: %v", perServer)

			// The other process hits every key, across both servers.
			if diff := cmp.Diff(first, call(f2)); diff != "" {
				t.Errorf("process 2 read other answers (-process 1 +process 2):\n%s", diff)
			}
			if got := runs.Load(); got != n {
				t.Errorf("fn ran %d times more in process 2, want 0 (all hits)", got-n)
			}

			// Clear in process 1: both processes recompute every key.
			if err := f1.Clear(ctx); err != nil {
				t.Fatal(err)
			}
			second := call(f2)
			if got := runs.Load(); got != 2*n {
				t.Errorf("after Clear fn ran %d times for %d keys, want %d", got-n, n, n)
			}
			if diff := cmp.Diff(second, call(f1)); diff != "" {
				t.Errorf("after Clear process 1 read other answers than process 2 wrote:\n%s", diff)
			}
			if got := runs.Load(); got != 2*n {
				t.Errorf("process 1 missed %d keys process 2 wrote after the Clear", got-2*n)
			}
			for id := range n {
				if first[id] == second[id] {
					t.Fatalf("key %d: %q both before and after Clear", id, first[id])
				}
			}
		})
	}
}

// TestRendezvousEndToEndAddServer: adding a third server to a pool of two
// under memo makes misses of exactly the keys the selector moves, about a
// third, and every other key still hits. The namespace's counter is chosen
// on a server that keeps it (a namespace whose counter moves starts over:
// see docs/scaling.md).
func TestRendezvousEndToEndAddServer(t *testing.T) {
	p := startRVPool(t, 2)
	third := fakememcached.Start(t)
	b := memcachebackend.New(p.client(t), memcachebackend.GenerationRefresh(0))
	names := p.sel.Servers()
	grown := mustRendezvous(t, append(slices.Clone(names), third.Addr())...)
	var ns string
	for i := 0; ns == ""; i++ {
		if i == 64 {
			t.Fatal("no namespace whose counter stays put in 64")
		}
		cand := testenv.NS(t, "grow")
		f := memo.New(func(context.Context, int) (int, error) { return 0, nil }, memo.Namespace(cand), memo.WithBackend(b))
		gk := memcachebackend.GenKey(f.Namespace())
		if rvPick(t, p.sel, gk) == rvPick(t, grown, gk) {
			ns = cand
		}
	}
	var runs atomic.Int64
	var missed sync.Map
	f := memo.New(func(_ context.Context, id int) (int, error) {
		runs.Add(1)
		missed.Store(id, true)
		return id * 2, nil
	}, memo.Namespace(ns), memo.WithBackend(b), memo.Timeout(2*time.Second))
	ctx := context.Background()
	const n = 1000
	callAll := func() {
		for id := range n {
			if v, err := f.Call(ctx, id); err != nil || v != id*2 {
				t.Fatalf("Call(%d) = %d, %v", id, v, err)
			}
		}
	}
	callAll()
	if runs.Load() != n {
		t.Fatalf("fn ran %d times for %d cold keys", runs.Load(), n)
	}
	wantMiss := map[int]bool{}
	for id := range n {
		sk, err := memcachebackend.StoredKey(ctx, b, f.Key(id))
		if err != nil {
			t.Fatal(err)
		}
		if rvPick(t, p.sel, sk) != rvPick(t, grown, sk) {
			if got := rvPick(t, grown, sk); got != third.Addr() {
				t.Fatalf("key %s moves to %s, not to the new server %s", sk, got, third.Addr())
			}
			wantMiss[id] = true
		}
	}
	if err := p.sel.SetServers(append(names, third.Addr())...); err != nil {
		t.Fatal(err)
	}
	runs.Store(0)
	missed.Clear()
	callAll()
	gotMiss := map[int]bool{}
	missed.Range(func(k, _ any) bool { gotMiss[k.(int)] = true; return true })
	if diff := cmp.Diff(wantMiss, gotMiss); diff != "" {
		t.Errorf("misses after adding a server (-keys moved +keys missed):\n%s", diff)
	}
	frac := float64(len(gotMiss)) / n
	if frac < 0.7/3 || frac > 1.3/3 {
		t.Errorf("adding a third server made %.3f of the keys miss, want 1/3 ± 30%%", frac)
	}
	if third.Len() != len(wantMiss) {
		t.Errorf("the new server rvHolds %d items, want the %d moved keys", third.Len(), len(wantMiss))
	}
	t.Logf("after adding a third server: %d of %d keys missed (%.3f)", len(gotMiss), n, frac)
}

// TestRendezvousConformance runs the backend conformance suite on a
// client whose Rendezvous spreads keys over two fake servers. The
// backends share one pool, as processes do (the lease tests need it).
func TestRendezvousConformance(t *testing.T) {
	pool := startRVPool(t, 2)
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return memcachebackend.New(pool.client(t))
	}, opts)
}

// BenchmarkPickServer compares Rendezvous.PickServer with gomemcache's
// ServerList on keys shaped as memcachebackend stores them, serially and
// from parallel goroutines.
func BenchmarkPickServer(b *testing.B) {
	keys := rvKeys(1024)
	for _, n := range []int{2, 4, 8, 16} {
		names := rvNames(n)
		var sl memcache.ServerList
		if err := sl.SetServers(names...); err != nil {
			b.Fatal(err)
		}
		sels := []struct {
			name string
			sel  memcache.ServerSelector
		}{
			{"rendezvous", mustRendezvous(b, names...)},
			{"serverlist", &sl},
		}
		for _, s := range sels {
			b.Run(fmt.Sprintf("%s/N=%d", s.name, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := s.sel.PickServer(keys[i&1023]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(fmt.Sprintf("%s/N=%d/parallel", s.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, err := s.sel.PickServer(keys[i&1023]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}
