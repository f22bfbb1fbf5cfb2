package redisbackend_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/testenv"
)

// announceNoLeaks checks, when t ends (after its other cleanups: clients
// and subscriptions closed), that no goroutine started during t is left.
// go-redis's pools and subscriptions end a little after Close: it retries
// for up to 3 s.
func announceNoLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		var err error
		for limit := time.Now().Add(3 * time.Second); time.Now().Before(limit); time.Sleep(10 * time.Millisecond) {
			if err = goleak.Find(before); err == nil {
				return
			}
		}
		t.Errorf("goroutines left after the test: %v", err)
	})
}

// rawSub is a plain go-redis subscription to an invalidation channel.
type rawSub struct {
	t      *testing.T
	sub    *redis.PubSub
	marker *redisbackend.PubSub // publishes the end-of-op marker
}

func subscribeRaw(t *testing.T, c redis.UniversalClient, channel string) *rawSub {
	t.Helper()
	ctx := context.Background()
	var sub *redis.PubSub
	if cc, ok := c.(*redis.ClusterClient); ok {
		sub = cc.SSubscribe(ctx, channel)
	} else {
		sub = c.Subscribe(ctx, channel)
	}
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil { // the subscription's confirmation
		t.Fatalf("subscribe %s: %v", channel, err)
	}
	return &rawSub{t: t, sub: sub, marker: redisbackend.NewPubSub(c, channel)}
}

// since returns the payloads published on the channel since the last call:
// it publishes a marker and reads up to it. Redis delivers one channel's
// messages in the order it ran the PUBLISHes (on a Cluster the channel
// lives on one master), so what comes before the marker is exactly what
// was published before it.
func (r *rawSub) since() []string {
	r.t.Helper()
	ctx := context.Background()
	const marker = "marker\x00\x00"
	if err := r.marker.Publish(ctx, memo.Invalidation{Origin: "marker"}); err != nil {
		r.t.Fatal(err)
	}
	var got []string
	for {
		m, err := r.sub.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			r.t.Fatalf("waiting for the marker: %v (got %q)", err, got)
		}
		if msg, ok := m.(*redis.Message); ok {
			if msg.Payload == marker {
				return got
			}
			got = append(got, msg.Payload)
		}
	}
}

// payload is the message carrying inv.
func payload(origin, ns, id string) string { return origin + "\x00" + ns + "\x00" + id }

// announceKeys returns ids of namespace ns for the cases to run: one on a
// single server; on a Cluster, one whose key lives on the channel's master
// (the write and the SPUBLISH share a pipeline) and one elsewhere (they do
// not).
func announceKeys(t *testing.T, c redis.UniversalClient, ns, channel string) map[string]string {
	t.Helper()
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return map[string]string{"": "k"}
	}
	ctx := context.Background()
	chm, err := cc.MasterForKey(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for i := 0; len(ids) < 2; i++ {
		id := fmt.Sprint("k", i)
		m, err := cc.MasterForKey(ctx, ns+":"+id)
		if err != nil {
			t.Fatal(err)
		}
		where := "/off the channel's master"
		if m == chm {
			where = "/on the channel's master"
		}
		if _, ok := ids[where]; !ok {
			ids[where] = id
		}
	}
	return ids
}

// WriteAnnounce does each op and publishes exactly the message Publish
// would, once; a fenced write that did not store and a write refused
// before it is sent publish nothing.
func TestAnnounceWriteAnnounce(t *testing.T) {
	announceNoLeaks(t)
	for _, kind := range []string{"standalone", "cluster"} {
		c, _ := clients(t, kind)
		testWriteAnnounce(t, kind, c)
	}
}

// The same on miniredis, which runs PUBLISH in pipelines and scripts too:
// every run covers Announce without a server.
func TestAnnounceWriteAnnounceMiniredis(t *testing.T) {
	announceNoLeaks(t)
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	testWriteAnnounce(t, "miniredis", c)
}

// The same on a *redis.Ring (two shards, both on the one test server): the
// PUBLISH follows the write, and a Ring's Backend announces too.
func TestAnnounceWriteAnnounceRing(t *testing.T) {
	announceNoLeaks(t)
	addr := testenv.Require(t, "MEMO_REDIS_ADDR")
	c := docRing(map[string]string{"a": addr, "b": addr})
	t.Cleanup(func() { c.Close() })
	testWriteAnnounce(t, "ring", c)
}

func testWriteAnnounce(t *testing.T, kind string, c redis.UniversalClient) {
	ns, channel := testenv.NS(t, "announce"), testenv.NS(t, "inv")
	sub := subscribeRaw(t, c, channel)
	ps := redisbackend.NewPubSub(c, channel)
	b := redisbackend.New(c, redisbackend.Announce(ps), redisbackend.MaxValueSize(1<<10))
	ctx := context.Background()
	for where, id := range announceKeys(t, c, ns, channel) {
		t.Run(kind+where, func(t *testing.T) {
			sub.t = t
			key := ns + ":" + id
			inv := memo.Invalidation{Origin: "o1", Namespace: ns, ID: id}
			msg := payload("o1", ns, id)
			get := func() string {
				v, ok, err := b.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					return "<missing>"
				}
				return string(v)
			}
			lease := func() string {
				tok, ok, err := b.Acquire(ctx, key, time.Minute)
				if err != nil || !ok {
					t.Fatalf("Acquire = %v, %v", ok, err)
				}
				return tok
			}
			tests := []struct {
				name       string
				w          func() memo.Write
				wantStored bool
				wantErr    error
				wantValue  string
				wantMsgs   []string
			}{
				{"set", func() memo.Write {
					return memo.Write{Op: memo.OpSet, Key: key, Value: []byte("v1"), TTL: time.Minute}
				}, true, nil, "v1", []string{msg}},
				{"set too large", func() memo.Write {
					return memo.Write{Op: memo.OpSet, Key: key, Value: make([]byte, 1<<10+1), TTL: time.Minute}
				}, false, memo.ErrTooLarge, "v1", nil},
				{"set fenced", func() memo.Write {
					return memo.Write{Op: memo.OpSetFenced, Key: key, Value: []byte("v2"), TTL: time.Minute, Token: lease()}
				}, true, nil, "v2", []string{msg}},
				{"set fenced, lease voided", func() memo.Write {
					lease()
					if err := b.Void(ctx, key); err != nil {
						t.Fatal(err)
					}
					return memo.Write{Op: memo.OpSetFenced, Key: key, Value: []byte("v3"), TTL: time.Minute, Token: "gone"}
				}, false, nil, "v2", nil},
				{"set fenced, another's lease", func() memo.Write {
					lease()
					return memo.Write{Op: memo.OpSetFenced, Key: key, Value: []byte("v3"), TTL: time.Minute, Token: "other"}
				}, false, nil, "v2", nil},
				{"delete (and the lease)", func() memo.Write {
					return memo.Write{Op: memo.OpDelete, Key: key}
				}, true, nil, "<missing>", []string{msg}},
				{"delete a missing key", func() memo.Write {
					return memo.Write{Op: memo.OpDelete, Key: key}
				}, true, nil, "<missing>", []string{msg}},
				{"set no ttl", func() memo.Write {
					return memo.Write{Op: memo.OpSet, Key: key, Value: []byte("v4")}
				}, true, nil, "v4", []string{msg}},
			}
			for _, tt := range tests {
				w := tt.w()
				sub.since()
				stored, err := b.WriteAnnounce(ctx, w, inv)
				if stored != tt.wantStored || !errors.Is(err, tt.wantErr) {
					t.Errorf("%s: WriteAnnounce = %v, %v, want %v, %v", tt.name, stored, err, tt.wantStored, tt.wantErr)
				}
				if got := get(); got != tt.wantValue {
					t.Errorf("%s: Get after WriteAnnounce = %q, want %q", tt.name, got, tt.wantValue)
				}
				if diff := cmp.Diff(tt.wantMsgs, sub.since()); diff != "" {
					t.Errorf("%s: published (-want +got):\n%s", tt.name, diff)
				}
			}
			// The delete voided the lease taken before it.
			if _, ok, err := b.Acquire(ctx, key, time.Minute); err != nil || !ok {
				t.Errorf("Acquire after a delete = %v, %v, want the lease free", ok, err)
			}
			b.Void(ctx, key)
		})
	}
	t.Run(kind+"/clear", func(t *testing.T) {
		sub.t = t
		for i := range 5 {
			if err := b.Set(ctx, fmt.Sprint(ns, ":c", i), []byte("x"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		sub.since()
		inv := memo.Invalidation{Origin: "o1", Namespace: ns}
		if stored, err := b.WriteAnnounce(ctx, memo.Write{Op: memo.OpClear, Key: ns}, inv); !stored || err != nil {
			t.Fatalf("WriteAnnounce(OpClear) = %v, %v, want true, nil", stored, err)
		}
		for i := range 5 {
			if _, ok, _ := b.Get(ctx, fmt.Sprint(ns, ":c", i)); ok {
				t.Errorf("c%d survived the clear", i)
			}
		}
		if diff := cmp.Diff([]string{payload("o1", ns, "")}, sub.since()); diff != "" {
			t.Errorf("clear: published (-want +got):\n%s", diff)
		}
	})
}

// Announce's message is byte for byte PubSub.Publish's.
func TestAnnounceSameMessageAsPublish(t *testing.T) {
	announceNoLeaks(t)
	c := standalone(t)
	channel := testenv.NS(t, "inv")
	sub := subscribeRaw(t, c, channel)
	ps := redisbackend.NewPubSub(c, channel)
	b := redisbackend.New(c, redisbackend.Announce(ps))
	ctx := context.Background()
	inv := memo.Invalidation{Origin: "abc", Namespace: "p:ns", ID: "id:with:colons"}
	if err := ps.Publish(ctx, inv); err != nil {
		t.Fatal(err)
	}
	want := sub.since()
	if _, err := b.WriteAnnounce(ctx, memo.Write{Op: memo.OpDelete, Key: testenv.NS(t, "x") + ":id"}, inv); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, sub.since()); len(want) != 1 || diff != "" {
		t.Errorf("Publish sent %q; WriteAnnounce (-Publish +WriteAnnounce):\n%s", want, diff)
	}
}

// tripCounter is a go-redis hook counting round trips: each command sent
// alone and each pipeline is one. It leaves out the subscription's own
// traffic, which does not pass through hooks, and a new connection's
// handshake and the Cluster's slot map reloads, which come and go with
// the pool.
type tripCounter struct {
	n    atomic.Int64
	mu   sync.Mutex
	cmds []string
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !setup[cmd.Name()] {
			h.add(cmd.Name())
		}
		return next(ctx, cmd)
	}
}

var setup = map[string]bool{"hello": true, "client": true, "cluster": true, "auth": true, "select": true, "ping": true}

func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var names []string
		for _, c := range cmds {
			if !setup[c.Name()] {
				names = append(names, c.Name())
			}
		}
		if len(names) > 0 {
			h.add("[" + strings.Join(names, " ") + "]")
		}
		return next(ctx, cmds)
	}
}

func (h *tripCounter) add(name string) {
	h.n.Add(1)
	h.mu.Lock()
	h.cmds = append(h.cmds, name)
	h.mu.Unlock()
}

// since returns the round trips and their commands since the last call.
func (h *tripCounter) since() (int64, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := strings.Join(h.cmds, " ")
	h.cmds = nil
	return h.n.Swap(0), s
}

// With Announce, a write through memo and its invalidation cost one round
// trip where they cost two: Set, Forget, a computed answer, a leased one.
func TestAnnounceRoundTrips(t *testing.T) {
	announceNoLeaks(t)
	type counts struct{ set, forget, miss, leasedMiss, leasedSet int64 }
	// Rounds trips without Announce, then with it. A miss reads (GET) and
	// writes; a leased miss reads, takes the lease (one script) and writes
	// fenced; a leased Set voids the lease first. (Clear, a scan, then the
	// publish, is logged: on a Cluster its SCANs go to each master's own
	// client, outside the hook.)
	cases := []struct {
		name                string
		kind                string
		onChannelMaster     bool
		without, withAnnnce counts
	}{
		{"standalone", "standalone", true, counts{2, 2, 3, 4, 3}, counts{1, 1, 2, 3, 2}},
		{"cluster, key on the channel's master", "cluster", true, counts{2, 2, 3, 4, 3}, counts{1, 1, 2, 4, 2}},
		{"cluster, key elsewhere", "cluster", false, counts{2, 2, 3, 4, 3}, counts{2, 2, 3, 4, 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, announce := range []bool{false, true} {
				// On a Cluster the hook goes on each master's client: a
				// pipeline to one master, sent on its client, is one round
				// trip, and so is each command the ClusterClient sends.
				h := &tripCounter{}
				var c redis.UniversalClient
				if tc.kind == "cluster" {
					cc := docClusterClient(strings.Split(testenv.Require(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")...)
					t.Cleanup(func() { cc.Close() })
					cc.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
					c = cc
				} else {
					sc := standalone(t)
					sc.AddHook(h)
					c = sc
				}
				ns, channel := testenv.NS(t, "trips"), testenv.NS(t, "inv")
				ps := redisbackend.NewPubSub(c, channel)
				tier := memo.NewLocalTier(1<<20, ps)
				t.Cleanup(tier.Close)
				var opts []redisbackend.Option
				if announce {
					opts = append(opts, redisbackend.Announce(ps))
				}
				be := redisbackend.New(c, opts...)
				ctx := context.Background()
				fn := func(ctx context.Context, id int) (int, error) { return id, nil }
				f := memo.New(fn, memo.Namespace(ns), memo.WithBackend(be), memo.WithLocalTier(tier))
				fl := memo.New(fn, memo.Namespace(ns+"l"), memo.WithBackend(be), memo.WithLocalTier(tier), memo.Lease(time.Second))
				waitFor(t, "the tier's subscription", tier.Ready)
				id := 0
				if cc, ok := c.(*redis.ClusterClient); ok {
					chm, _ := cc.MasterForKey(ctx, channel)
					for ; ; id++ {
						km, _ := cc.MasterForKey(ctx, f.Key(id))
						kml, _ := cc.MasterForKey(ctx, fl.Key(id))
						if (km == chm) == tc.onChannelMaster && (kml == chm) == tc.onChannelMaster {
							break
						}
					}
				}
				// Warm up: scripts loaded, the cluster's slot map and
				// command table in place, connections pooled.
				fl.Call(ctx, id+1)
				fl.Set(ctx, id+1, 1)
				f.Call(ctx, id+1)
				// The lease scripts on the node of id's key itself (a fresh
				// node answers the first EVALSHA with NOSCRIPT: one more
				// round trip, seen on a new CI machine).
				fl.Call(ctx, id)
				fl.Forget(ctx, id)
				h.since()
				var got counts
				step := func(n *int64, call func()) {
					call()
					var cmds string
					*n, cmds = h.since()
					t.Logf("announce %v: %d round trips: %s", announce, *n, cmds)
				}
				step(&got.set, func() { f.Set(ctx, id, 7) })
				step(&got.forget, func() { f.Forget(ctx, id) })
				step(&got.miss, func() { f.Call(ctx, id) })
				fl.Forget(ctx, id)
				h.since()
				step(&got.leasedMiss, func() { fl.Call(ctx, id) })
				step(&got.leasedSet, func() { fl.Set(ctx, id, 8) })
				var clear int64
				step(&clear, func() { f.Clear(ctx) })
				want := tc.without
				if announce {
					want = tc.withAnnnce
				}
				if got != want {
					t.Errorf("announce %v: round trips %+v, want %+v", announce, got, want)
				}
			}
		})
	}
}

// Through memo with Announce, every write, Forget, Set and Clear publishes
// one message, from the writer's tier (the same Origin as its messages
// published without Announce), and another process's tier applies it.
func TestAnnounceMemoPublishes(t *testing.T) {
	announceNoLeaks(t)
	for _, kind := range []string{"standalone", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			ca, cb := clients(t, kind)
			ns, channel := testenv.NS(t, "pub"), testenv.NS(t, "inv")
			sub := subscribeRaw(t, ca, channel)
			ctx := context.Background()
			var src atomic.Int64
			fn := func(ctx context.Context, id int) (int64, error) { return src.Load(), nil }
			peer := func(c redis.UniversalClient, announce bool, lease bool) (*memo.Func[int, int64], *memo.LocalTier) {
				ps := redisbackend.NewPubSub(c, channel)
				tier := memo.NewLocalTier(1<<20, ps)
				t.Cleanup(tier.Close)
				var opts []redisbackend.Option
				if announce {
					opts = append(opts, redisbackend.Announce(ps))
				}
				mo := []memo.Option{memo.Namespace(ns), memo.WithBackend(redisbackend.New(c, opts...)), memo.WithLocalTier(tier), memo.Expire(time.Hour)}
				if lease {
					mo = append(mo, memo.Lease(time.Second))
				}
				waitFor(t, "the tier's subscription", tier.Ready)
				return memo.New(fn, mo...), tier
			}
			a, aTier := peer(ca, true, false)
			b, _ := peer(cb, false, false)
			// A Func on a's tier without Announce publishes the old way:
			// its message carries the tier's Origin.
			plain := memo.New(fn, memo.Namespace(ns+"plain"), memo.WithBackend(redisbackend.New(ca)), memo.WithLocalTier(aTier))
			sub.since()
			if err := plain.Forget(ctx, 1); err != nil {
				t.Fatal(err)
			}
			old := sub.since()
			if len(old) != 1 {
				t.Fatalf("Forget without Announce published %q, want one message", old)
			}
			tierOrigin, _, _ := strings.Cut(old[0], "\x00")
			if _, err := b.Call(ctx, 1); err != nil {
				t.Fatal(err)
			}
			sub.since()
			type step struct {
				name string
				do   func() error
				id   string
			}
			steps := []step{
				{"a.Call (a miss)", func() error { _, err := a.Call(ctx, 2); return err }, "2"},
				{"a.Set", func() error { src.Add(1); return a.Set(ctx, 1, src.Load()) }, "1"},
				{"a.Forget", func() error { src.Add(1); return a.Forget(ctx, 1) }, "1"},
				{"a.Clear", func() error { src.Add(1); return a.Clear(ctx) }, ""},
			}
			var origins []string
			for _, s := range steps {
				if v, err := b.Call(ctx, 1); err != nil || v != src.Load() {
					t.Fatalf("before %s: b.Call(1) = %d, %v, want %d", s.name, v, err, src.Load())
				}
				sub.since()
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				got := sub.since()
				if len(got) != 1 {
					t.Fatalf("%s published %q, want one message", s.name, got)
				}
				parts := strings.Split(got[0], "\x00")
				if len(parts) != 3 || parts[0] == "" || parts[1] != a.Namespace() || parts[2] != s.id {
					t.Fatalf("%s published %q, want <origin>\\x00%s\\x00%s", s.name, got[0], a.Namespace(), s.id)
				}
				origins = append(origins, parts[0])
				want := src.Load()
				waitFor(t, "b to see "+s.name, func() bool { v, _ := b.Call(ctx, 1); return v == want })
			}
			for i, o := range origins {
				if o != tierOrigin {
					t.Errorf("%s: Origin %q, want a's tier's %q (as published without Announce)", steps[i].name, o, tierOrigin)
				}
			}
			// b's own writes (the old path) carry another Origin.
			sub.since() // b's own fill above published too
			if err := b.Forget(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if got := sub.since(); len(got) != 1 || strings.HasPrefix(got[0], tierOrigin+"\x00") {
				t.Errorf("b.Forget published %q, want one message from another Origin than a's %q", got, tierOrigin)
			}

			// A leased write publishes once, after it stored.
			al, _ := peer(ca, true, true)
			sub.since()
			if _, err := al.Call(ctx, 3); err != nil {
				t.Fatal(err)
			}
			if got := sub.since(); len(got) != 1 || !strings.HasSuffix(got[0], "\x003") {
				t.Errorf("a leased miss published %q, want one message for id 3", got)
			}
		})
	}
}

func TestAnnouncePanics(t *testing.T) {
	announceNoLeaks(t)
	c, other := standalone(t), standalone(t)
	ps := redisbackend.NewPubSub(c, "ch")
	tests := []struct {
		name string
		f    func()
		want string
	}{
		{"Announce(nil)", func() { redisbackend.Announce(nil) }, "redisbackend: Announce(nil)"},
		{"New with another client's PubSub", func() { redisbackend.New(other, redisbackend.Announce(ps)) }, "redisbackend: New: Announce's PubSub was made on another client"},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, tt.want) {
					t.Errorf("%s: panic %v, want %q...", tt.name, r, tt.want)
				}
			}()
			tt.f()
		}()
	}
	b := redisbackend.New(c, redisbackend.Announce(ps))
	if !b.Announces(ps) {
		t.Errorf("Announces(its own PubSub) = false, want true")
	}
	if b.Announces(redisbackend.NewPubSub(c, "ch")) {
		t.Errorf("Announces(another PubSub on the same channel) = true, want false")
	}
	if b.Announces(nil) {
		t.Errorf("Announces(nil) = true, want false")
	}
	if redisbackend.New(c).Announces(ps) {
		t.Errorf("Announces(ps) without Announce = true, want false")
	}
	if _, err := redisbackend.New(c).WriteAnnounce(context.Background(), memo.Write{Op: memo.OpDelete, Key: "x:y"}, memo.Invalidation{}); err == nil {
		t.Errorf("WriteAnnounce without Announce = nil error, want one")
	}
}

// A PUBLISH that Redis refuses (here an ACL user without the channel)
// does not undo the write: WriteAnnounce reports stored and a publish
// error, in the pipeline and in the fenced write's script.
func TestAnnounceRefusedPublish(t *testing.T) {
	announceNoLeaks(t)
	admin := standalone(t)
	ctx := context.Background()
	user, pass := testenv.NS(t, "user"), "pw-announce"
	if err := admin.Do(ctx, "acl", "setuser", user, "reset", "on", ">"+pass, "~*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "acl", "deluser", user) })
	c := redis.NewClient(&redis.Options{Addr: testenv.Require(t, "MEMO_REDIS_ADDR"), Username: user, Password: pass, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	b := redisbackend.New(c, redisbackend.Announce(redisbackend.NewPubSub(c, testenv.NS(t, "inv"))))
	key := testenv.NS(t, "refused") + ":k"
	inv := memo.Invalidation{Origin: "o", Namespace: "ns", ID: "k"}
	for _, fenced := range []bool{false, true} {
		w := memo.Write{Op: memo.OpSet, Key: key, Value: []byte(fmt.Sprint("v", fenced)), TTL: time.Minute}
		if fenced {
			tok, ok, err := b.Acquire(ctx, key, time.Minute)
			if err != nil || !ok {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			w.Op, w.Token = memo.OpSetFenced, tok
		}
		stored, err := b.WriteAnnounce(ctx, w, inv)
		if !stored || !errors.Is(err, memo.ErrNotPublished) || !strings.Contains(err.Error(), "redisbackend: publish: ") {
			t.Errorf("fenced %v: WriteAnnounce with the PUBLISH refused = %v, %v, want true, a publish error wrapping memo.ErrNotPublished", fenced, stored, err)
		}
		if got, ok, _ := b.Get(ctx, key); !ok || string(got) != string(w.Value) {
			t.Errorf("fenced %v: Get = %q, %v, want %q: the write stands", fenced, got, ok, w.Value)
		}
	}
}
