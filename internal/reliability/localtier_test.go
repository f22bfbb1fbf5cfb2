package reliability_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/clocktest"
)

// The local tier in front of a shared backend (issue 11), across real OS
// processes: this test binary is re-executed as process B
// (TestLocalTierChild), and the test itself is process A. Each process
// has its own Redis clients, redisbackend.New, a memo.LocalTier on
// redisbackend.NewPubSub and a memo.Func over one namespace. fn reads
// the "source of truth", a Redis key of its own, so that either process
// computes the current answer. A drives B through B's stdin and reads
// its answers on B's stdout (lines starting "LT "); B polls its own
// Call and timestamps what it sees with the wall clock, which both
// processes read from the same kernel.

// ltSpec is what process B is told to build, as JSON in MEMO_LT_CHILD.
type ltSpec struct {
	Kind       string        // "standalone" or "cluster"
	NS         string        // the memo namespace both processes use
	Channel    string        // the invalidation channel
	Name       string        // CLIENT SETNAME of B's connections, to find its subscription
	PubSubAddr string        // when set: B subscribes through this address (a proxy)
	LocalTTL   time.Duration // 0: memo's default
	// CSC: no LocalTier; the backend's client has go-redis' own
	// client-side cache (standalone only), the zero-code alternative.
	CSC bool
}

// ltPeer is one process's view of the shared cache.
type ltPeer struct {
	c    redis.UniversalClient // data client: backend and source of truth
	be   *ltCounting
	inv  *tracedInv      // nil with CSC
	tier *memo.LocalTier // nil with CSC
	f    *memo.Func[int, int64]
	errs faults
	// remote counts the reads that reached Redis: the backend's with a
	// LocalTier, go-redis' cache misses with CSC.
	remote func() int64
}

// ltCounting counts the reads that reach the backend: a call that reads
// none was answered by the local tier.
type ltCounting struct {
	memo.Backend
	gets atomic.Int64
}

func (c *ltCounting) Get(ctx context.Context, key string) ([]byte, bool, error) {
	c.gets.Add(1)
	return c.Backend.Get(ctx, key)
}

// tracedInv wraps an Invalidator to timestamp (wall clock, after the
// tier has acted on it) every Lost, Renewed and Invalidate it delivers.
type tracedInv struct {
	memo.Invalidator
	lostAt, renewedAt atomic.Int64 // UnixNano of the last one; 0: none yet
	losts, renewals   atomic.Int64
	firstInv          atomic.Int64 // UnixNano of the first Invalidate since reset to 0
}

func (ti *tracedInv) Subscribe(s memo.Subscriber) func() {
	return ti.Invalidator.Subscribe(&tracedSub{s, ti})
}

type tracedSub struct {
	memo.Subscriber
	ti *tracedInv
}

func (s *tracedSub) Lost() {
	s.Subscriber.Lost()
	s.ti.lostAt.Store(time.Now().UnixNano())
	s.ti.losts.Add(1)
}

func (s *tracedSub) Renewed() {
	s.Subscriber.Renewed()
	s.ti.renewedAt.Store(time.Now().UnixNano())
	s.ti.renewals.Add(1)
}

func (s *tracedSub) Invalidate(inv memo.Invalidation) {
	s.Subscriber.Invalidate(inv)
	s.ti.firstInv.CompareAndSwap(0, time.Now().UnixNano())
}

func srcKey(ns string, i int) string { return "src:" + ns + ":" + strconv.Itoa(i) }

// ltClient returns a client of kind named name, closed when t ends.
func ltClient(t testing.TB, kind, addr, name string) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if kind == "cluster" {
		addrs := strings.Split(env(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ClientName: name, ContextTimeoutEnabled: true, PoolSize: 16})
	} else {
		if addr == "" {
			addr = env(t, "MEMO_REDIS_ADDR")
		}
		o := redisOptions(addr)
		o.ClientName = name
		c = redis.NewClient(o)
	}
	t.Cleanup(func() { c.Close() })
	pingRedis(t, c)
	return c
}

// newLTPeer builds one process's function over the shared Redis and waits
// for its tier's subscription.
func newLTPeer(t testing.TB, sp ltSpec) *ltPeer {
	t.Helper()
	p := &ltPeer{c: ltClient(t, sp.Kind, "", sp.Name)}
	opts := []memo.Option{memo.Namespace(sp.NS), memo.Expire(time.Hour), memo.Timeout(2 * time.Second), memo.OnError(p.errs.hook)}
	if sp.CSC {
		o := redisOptions(env(t, "MEMO_REDIS_ADDR"))
		o.ClientName, o.Protocol = sp.Name, 3
		o.ClientSideCacheConfig = &redis.ClientSideCacheConfig{MaxEntries: 10000}
		csc := redis.NewClient(o)
		t.Cleanup(func() { csc.Close() })
		p.be = &ltCounting{Backend: redisbackend.New(csc)}
		p.remote = func() int64 { return int64(csc.CSCStats().Misses) }
		opts = append(opts, memo.WithBackend(p.be))
	} else {
		p.be = &ltCounting{Backend: redisbackend.New(p.c)}
		p.remote = p.be.gets.Load
		psc := p.c
		if sp.PubSubAddr != "" {
			psc = ltClient(t, "standalone", sp.PubSubAddr, sp.Name)
		}
		p.inv = &tracedInv{Invalidator: redisbackend.NewPubSub(psc, sp.Channel)}
		p.tier = memo.NewLocalTier(1<<20, p.inv)
		t.Cleanup(p.tier.Close)
		opts = append(opts, memo.WithBackend(p.be), memo.WithLocalTier(p.tier))
	}
	if sp.LocalTTL > 0 {
		opts = append(opts, memo.LocalTTL(sp.LocalTTL))
	}
	c, ns := p.c, sp.NS
	p.f = memo.New(func(ctx context.Context, i int) (int64, error) {
		v, err := c.Get(ctx, srcKey(ns, i)).Int64()
		if errors.Is(err, redis.Nil) {
			return 0, nil
		}
		return v, err
	}, opts...)
	deadline := time.Now().Add(10 * time.Second)
	for p.tier != nil && !p.tier.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("the tier's subscription was not in place within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	return p
}

// setSource writes the source of truth for i (what fn returns from now on).
func (p *ltPeer) setSource(t testing.TB, ns string, i int, v int64) {
	t.Helper()
	if err := p.c.Set(context.Background(), srcKey(ns, i), v, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.c.Del(context.Background(), srcKey(ns, i)) })
}

// pollGap is the pause between two of B's polls. It is time.Sleep, about
// a millisecond here: a raw nanosleep system call would be finer, but a
// thread blocked in it keeps the Go runtime from polling the network for
// up to 10 ms (sysmon's period), which delays the subscriber goroutine and
// measured exactly that: 10 ms p50.
func pollGap() { time.Sleep(20 * time.Microsecond) }

// spinFor waits d by spinning: precise, for the short offsets of the kill
// rounds.
func spinFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		runtime.Gosched()
	}
}

// ltChild is process B as process A sees it.
type ltChild struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // B's "LT " lines, without the prefix
	mu    sync.Mutex
	other []string // B's other output (test failures), for the error message
	done  chan struct{}
}

func startLTChild(t *testing.T, sp ltSpec) *ltChild {
	t.Helper()
	spec, _ := json.Marshal(sp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLocalTierChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MEMO_LT_CHILD="+string(spec))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &ltChild{t: t, cmd: cmd, in: in, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(ch.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "LT "); ok {
				ch.lines <- l
			} else {
				ch.mu.Lock()
				ch.other = append(ch.other, sc.Text())
				ch.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		in.Close() // B ends at EOF
		select {
		case <-ch.done:
		case <-time.After(20 * time.Second):
		}
		if err := cmd.Wait(); err != nil && !t.Failed() {
			t.Errorf("process B: %v\n%s", err, ch.output())
		}
		cancel()
	})
	if l := ch.read(30 * time.Second); l != "ready" {
		t.Fatalf("process B did not start: %q\n%s", l, ch.output())
	}
	return ch
}

func (ch *ltChild) output() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return strings.Join(ch.other, "\n")
}

// read returns B's next line, failing the test after d.
func (ch *ltChild) read(d time.Duration) string {
	ch.t.Helper()
	select {
	case l := <-ch.lines:
		return l
	case <-ch.done:
		ch.t.Fatalf("process B ended:\n%s", ch.output())
	case <-time.After(d):
		ch.t.Fatalf("process B did not answer within %v:\n%s", d, ch.output())
	}
	return ""
}

// send writes one command line to B.
func (ch *ltChild) send(format string, args ...any) {
	ch.t.Helper()
	if _, err := fmt.Fprintf(ch.in, format+"\n", args...); err != nil {
		ch.t.Fatalf("writing to process B: %v", err)
	}
}

// ask sends a command and returns the fields of B's answer; an answer
// starting "err" fails the test.
func (ch *ltChild) ask(d time.Duration, format string, args ...any) []string {
	ch.t.Helper()
	ch.send(format, args...)
	f := strings.Fields(ch.read(d))
	if len(f) == 0 || f[0] == "err" {
		ch.t.Fatalf("process B, asked %q: %v", fmt.Sprintf(format, args...), f)
	}
	return f
}

func atoi64(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// TestLocalTierChild is process B of the multi-process local tier tests;
// it does nothing unless started by one of them. It answers, one line
// per command:
//
//	warm i v          calls until i is v and answered by the local tier: "ok"
//	watch i old new   "watching", then polls Call(i) until it returns new: "seen
//	                  <wall ns at the start of that call> <at its end> <calls>
//	                  <wall ns of the first invalidation delivered since>"
//	poll i            starts polling Call(i) in the background, logging each call: "polling"
//	stop w k old new ms
//	                  waits (up to ms) for the subscription to be lost at or after k
//	                  and renewed, stops the poll, and judges it against A's write
//	                  that returned at w: "result <lost ns> <renewed ns> <old answers
//	                  after w and the loss> <old answers after w, before the loss>
//	                  <start ns of the last call after w that answered old> <calls>"
//	ready?            "ready <0|1>": whether the tier is in use
func TestLocalTierChild(t *testing.T) {
	spec := os.Getenv("MEMO_LT_CHILD")
	if spec == "" {
		t.Skip("process B of the multi-process local tier tests")
	}
	var sp ltSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		t.Fatal(err)
	}
	p := newLTPeer(t, sp)
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	reply := func(format string, args ...any) {
		fmt.Fprintf(out, "LT "+format+"\n", args...)
		out.Flush()
	}
	reply("ready")

	type obs struct{ start, end, v int64 }
	var (
		pollStop chan struct{}
		pollDone chan []obs
	)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "warm":
			i, want := int(atoi64(f[1])), atoi64(f[2])
			ok := false
			for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); {
				before := p.remote()
				v, err := p.f.Call(ctx, i)
				if err != nil {
					reply("err Call(%d): %v", i, err)
					break
				}
				ok = v == want && p.remote() == before
			}
			if ok {
				reply("ok")
			} else {
				reply("err Call(%d) never answered %d from the local tier", i, want)
			}
		case "watch":
			i, old, next := int(atoi64(f[1])), atoi64(f[2]), atoi64(f[3])
			if p.inv != nil {
				p.inv.firstInv.Store(0)
			}
			reply("watching")
			calls := 0
			for deadline := time.Now().Add(10 * time.Second); ; {
				start := time.Now()
				v, err := p.f.Call(ctx, i)
				end := time.Now()
				calls++
				if err != nil {
					reply("err Call(%d): %v", i, err)
					break
				}
				if v == next {
					bad := false
					for range 20 { // once seen, never the old value again
						if w, _ := p.f.Call(ctx, i); w != next {
							reply("err Call(%d) = %d after it had returned %d", i, w, next)
							bad = true
							break
						}
					}
					if !bad {
						var inv int64
						if p.inv != nil {
							inv = p.inv.firstInv.Load()
						}
						reply("seen %d %d %d %d", start.UnixNano(), end.UnixNano(), calls, inv)
					}
					break
				}
				if v != old {
					reply("err Call(%d) = %d, want %d or %d", i, v, old, next)
					break
				}
				if end.After(deadline) {
					reply("err Call(%d) still %d 10s after the write", i, v)
					break
				}
				pollGap()
			}
		case "poll":
			i := int(atoi64(f[1]))
			pollStop, pollDone = make(chan struct{}), make(chan []obs, 1)
			go func(stop chan struct{}, done chan []obs) {
				var log []obs
				for {
					select {
					case <-stop:
						done <- log
						return
					default:
					}
					start := time.Now().UnixNano()
					v, err := p.f.Call(ctx, i)
					if err != nil {
						v = -1
					}
					log = append(log, obs{start, time.Now().UnixNano(), v})
					pollGap()
				}
			}(pollStop, pollDone)
			reply("polling")
		case "stop":
			wrote, killed, old, next, wait := atoi64(f[1]), atoi64(f[2]), atoi64(f[3]), atoi64(f[4]), atoi64(f[5])
			// Wait for the renewal that follows the loss.
			for deadline := time.Now().Add(time.Duration(wait) * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if la := p.inv.lostAt.Load(); la >= killed && p.inv.renewedAt.Load() > la && p.tier.Ready() {
					break
				}
			}
			close(pollStop)
			log := <-pollDone
			lost, renewed := p.inv.lostAt.Load(), p.inv.renewedAt.Load()
			guard := max(wrote, lost)
			violations, windowStale, lastStale := 0, 0, int64(0)
			for _, o := range log {
				switch {
				case o.v != old && o.v != next:
					violations++ // an error or a foreign value
				case o.v == old && o.start > guard:
					violations++
					lastStale = o.start
				case o.v == old && o.start > wrote:
					windowStale++
					lastStale = o.start
				}
			}
			reply("result %d %d %d %d %d %d", lost, renewed, violations, windowStale, lastStale, len(log))
		case "ready?":
			r := 0
			if p.tier.Ready() {
				r = 1
			}
			reply("ready %d", r)
		default:
			reply("err unknown command %q", f[0])
		}
	}
}

// TestLocalTierAcrossProcesses: after Set or Forget returns in process A,
// process B's next call reflects it. 200 trials on standalone Redis and on
// the Cluster: in each, B first answers the key from its local tier, then
// polls its own Call (pausing about 1 ms between calls) while A writes;
// the staleness is the time from A's Set or Forget returning until the
// start of B's first call that returned the new answer (0 when B had it
// before A's call returned): a call of B's made that long after the write
// reflects it. The figure: p99 at most 10 ms. Also logged: until
// that call returned (after a Forget it reads Redis and runs fn), and
// until the invalidation reached B's tier. A's own next call returns the
// new answer at once (read-your-writes).
func TestLocalTierAcrossProcesses(t *testing.T) {
	for _, kind := range []string{"standalone", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			p99 := stalenessTrials(t, ltSpec{Kind: kind})
			if p99 > 10*time.Millisecond {
				t.Errorf("p99 staleness in process B after a write in process A = %v, want at most 10ms", p99)
			}
		})
	}
}

// TestLocalTierGoRedisCSCAcrossProcesses measures the zero-code
// alternative the same way: process B has no LocalTier, its backend's
// client has go-redis' own client-side cache (v9.22+, standalone only),
// invalidated by Redis itself (CLIENT TRACKING); A is as above. It
// reports the figures and asserts nothing of go-redis but that B
// reflects every write.
func TestLocalTierGoRedisCSCAcrossProcesses(t *testing.T) {
	stalenessTrials(t, ltSpec{Kind: "standalone", CSC: true})
}

// stalenessTrials runs the 200 trials of the staleness tests with B built
// from sp (A always has a LocalTier), logs the figures and returns p99.
func stalenessTrials(t *testing.T, sp ltSpec) time.Duration {
	const trials = 200
	ns := namespace("lt-procs")
	sp.NS, sp.Channel = ns, "inv."+ns
	a := newLTPeer(t, ltSpec{Kind: sp.Kind, NS: ns, Channel: sp.Channel, Name: "memo-lt-a-" + strconv.Itoa(os.Getpid())})
	sp.Name = "memo-lt-b"
	b := startLTChild(t, sp)
	ctx := context.Background()
	var lat, ends, arrive []time.Duration
	early := 0
	for i := range trials {
		v0, v1 := int64(i*10+1), int64(i*10+2)
		a.setSource(t, ns, i, v0)
		if v, err := a.f.Call(ctx, i); v != v0 || err != nil {
			t.Fatalf("a.Call(%d) = %d, %v; want %d", i, v, err, v0)
		}
		b.ask(10*time.Second, "warm %d %d", i, v0)
		b.ask(10*time.Second, "watch %d %d %d", i, v0, v1)
		a.setSource(t, ns, i, v1)
		op := "Set"
		var err error
		if i%2 == 0 {
			err = a.f.Set(ctx, i, v1)
		} else {
			op = "Forget"
			err = a.f.Forget(ctx, i)
		}
		returned := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("a.%s(%d): %v", op, i, err)
		}
		if v, _ := a.f.Call(ctx, i); v != v1 {
			t.Fatalf("a.Call(%d) after its own %s = %d, want %d at once", i, op, v, v1)
		}
		f := strings.Fields(b.read(15 * time.Second))
		if len(f) != 5 || f[0] != "seen" {
			t.Fatalf("trial %d (%s): process B: %v", i, op, f)
		}
		d := time.Duration(atoi64(f[1]) - returned)
		if d < 0 {
			early++
			d = 0
		}
		lat = append(lat, d)
		ends = append(ends, max(time.Duration(atoi64(f[2])-returned), 0))
		if inv := atoi64(f[4]); inv != 0 {
			arrive = append(arrive, time.Duration(inv-returned))
		}
	}
	slices.Sort(lat)
	slices.Sort(ends)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	kv := []any{"trials", trials, "p50", us(p50), "p99", us(p99), "max", us(lat[len(lat)-1]),
		"reflected_by_return", early, "call_returned_p50", us(ends[trials/2]), "call_returned_p99", us(ends[trials*99/100]),
		"faults_a", a.errs.ops()}
	if len(arrive) == trials {
		slices.Sort(arrive)
		kv = append(kv, "invalidation_arrived_p50", us(arrive[trials/2]), "invalidation_arrived_p99", us(arrive[trials*99/100]))
	}
	figures(t, kv...)
	return p99
}

// us renders d in microseconds, signed: "-12µs", "2712µs".
func us(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "µs" }

// pubsubIDs returns the ids of the pub/sub connections named name.
func pubsubIDs(t testing.TB, admin *redis.Client, name string) []string {
	t.Helper()
	list, err := admin.Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for line := range strings.SplitSeq(list, "\n") {
		var id string
		named := false
		for kv := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(kv, "id="); ok {
				id = v
			}
			if kv == "name="+name {
				named = true
			}
		}
		if named && id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestLocalTierSubscriptionKilledAcrossProcesses: B's subscription
// connection is killed (CLIENT KILL TYPE pubsub, by an admin client,
// aimed at B's connection by its id so that other processes' subscriptions
// on the shared server live) while A writes. B polls its own Call
// throughout. Once A's write has returned and B has noticed the loss,
// B never serves the old value: the tier is flushed and bypassed until
// the subscription is renewed. Between the kill and B noticing it, a
// message can be lost: the test reports how long that window lasted and
// how many old answers B served in it after A's write had returned.
// Rounds vary the order: the write right after the kill, 0.2, 1 or 5 ms
// after it, or just before it.
func TestLocalTierSubscriptionKilledAcrossProcesses(t *testing.T) {
	const rounds = 40
	ns := namespace("lt-kill")
	bname := "memo-lt-b-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sp := ltSpec{Kind: "standalone", NS: ns, Channel: "inv." + ns, Name: "memo-lt-a-" + strconv.Itoa(os.Getpid())}
	a := newLTPeer(t, sp)
	sp.Name = bname
	b := startLTChild(t, sp)
	admin := redis.NewClient(redisOptions(env(t, "MEMO_REDIS_ADDR")))
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	offsets := []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, -1}
	var notice, renew []time.Duration
	windowStale, calls := 0, 0
	var lastStale time.Duration
	for r := range rounds {
		const key = 7
		v0, v1 := int64(r*10+1), int64(r*10+2)
		a.setSource(t, ns, key, v0)
		if err := a.f.Set(ctx, key, v0); err != nil {
			t.Fatal(err)
		}
		b.ask(10*time.Second, "warm %d %d", key, v0)
		ids := pubsubIDs(t, admin, bname)
		if len(ids) != 1 {
			t.Fatalf("round %d: process B holds %d pub/sub connections named %s, want 1", r, len(ids), bname)
		}
		b.ask(10*time.Second, "poll %d", key)
		spinFor(500 * time.Microsecond) // B serves the old value from its tier meanwhile
		write := func() int64 {
			a.setSource(t, ns, key, v1)
			if err := a.f.Set(ctx, key, v1); err != nil {
				t.Fatal(err)
			}
			return time.Now().UnixNano()
		}
		var wrote int64
		off := offsets[r%len(offsets)]
		if off < 0 {
			wrote = write()
		}
		killing := time.Now().UnixNano()
		if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub", "ID", ids[0]).Err(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now().UnixNano()
		if off >= 0 {
			spinFor(off)
			wrote = write()
		}
		f := b.ask(20*time.Second, "stop %d %d %d %d 10000", wrote, killing, v0, v1)
		if len(f) != 7 || f[0] != "result" {
			t.Fatalf("round %d: process B: %v", r, f)
		}
		lost, renewed, viol, ws, ls, n := atoi64(f[1]), atoi64(f[2]), atoi64(f[3]), atoi64(f[4]), atoi64(f[5]), atoi64(f[6])
		if lost < killing {
			t.Fatalf("round %d: process B did not notice the killed subscription within 10s", r)
		}
		if renewed <= lost {
			t.Fatalf("round %d: process B's subscription was not renewed within 10s of the loss", r)
		}
		if viol != 0 {
			t.Errorf("round %d (write %v after the kill): process B served the old value (or an error) %d times after A's write had returned and B had noticed the loss", r, off, viol)
		}
		notice = append(notice, time.Duration(lost-killed))
		renew = append(renew, time.Duration(renewed-lost))
		windowStale += int(ws)
		calls += int(n)
		if ws > 0 {
			lastStale = max(lastStale, time.Duration(ls-wrote))
		}
		// B's next call after the renewal answers the new value, and from
		// its tier again.
		b.ask(10*time.Second, "warm %d %d", key, v1)
	}
	slices.Sort(notice)
	slices.Sort(renew)
	figures(t, "rounds", rounds, "kill_to_noticed_p50", us(notice[len(notice)/2]), "kill_to_noticed_max", us(notice[len(notice)-1]),
		"noticed_to_renewed_p50", us(renew[len(renew)/2]), "noticed_to_renewed_max", us(renew[len(renew)-1]),
		"old_answers_after_write_before_noticed", windowStale, "latest_old_answer_started_after_write", us(lastStale), "calls_polled", calls)
}

// TestLocalTierSilentSubscription: B's subscription goes silent (a proxy
// between B's subscriber and Redis keeps the connection open but forwards
// nothing, as a dead peer behind a firewall or a half-open TCP connection
// does), while its reads still reach Redis. PubSub's docs say a silent
// connection is found by a PING every few seconds (3 s): B must notice the
// loss, flush and bypass its tier, and reflect A's write, within two probe
// periods and a margin (10 s), with LocalTTL set far beyond that (1 h) so
// that only the probe can save it.
func TestLocalTierSilentSubscription(t *testing.T) {
	ns := namespace("lt-silent")
	px := newProxy(t, env(t, "MEMO_REDIS_ADDR"), 0)
	sp := ltSpec{Kind: "standalone", NS: ns, Channel: "inv." + ns, Name: "memo-lt-a-" + strconv.Itoa(os.Getpid())}
	a := newLTPeer(t, sp)
	sp.Name, sp.PubSubAddr, sp.LocalTTL = "memo-lt-b-silent", px.Addr(), time.Hour
	b := startLTChild(t, sp)
	ctx := context.Background()
	const key = 3
	a.setSource(t, ns, key, 1)
	if err := a.f.Set(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	b.ask(10*time.Second, "warm %d %d", key, 1)
	b.ask(10*time.Second, "poll %d", key)
	px.setMode(modeSilent)
	silent := time.Now()
	a.setSource(t, ns, key, 2)
	if err := a.f.Set(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	// The silent proxy never lets B renew its subscription: ask whether
	// its tier is in use.
	noticed := time.Duration(-1)
	for time.Since(silent) < 10*time.Second {
		if f := b.ask(5*time.Second, "ready?"); f[1] == "0" {
			noticed = time.Since(silent)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	wait := 0 // B never noticed: nothing to wait for
	if noticed >= 0 {
		wait = 10000
		px.setMode(modePass) // the renewal that "stop" waits for can happen now
	}
	f := b.ask(30*time.Second, "stop %d %d %d %d %d", wrote.UnixNano(), silent.UnixNano(), 1, 2, wait)
	old := atoi64(f[3]) + atoi64(f[4])
	stale := time.Duration(0)
	if ls := atoi64(f[5]); ls != 0 {
		stale = time.Duration(ls - wrote.UnixNano())
	}
	seen := "never"
	if noticed >= 0 {
		seen = us(noticed)
	}
	figures(t, "silent_to_noticed", seen, "old_answers_after_write", old, "latest_old_answer_started_after_write", us(stale))
	if noticed < 0 {
		t.Errorf("process B's tier was still in use 10s after its subscription went silent (LocalTTL 1h): "+
			"it served the old value %d times after A's write, the latest %v after it: "+
			"redisbackend.PubSub's PING does not notice a silent connection", old, stale.Round(time.Millisecond))
	}
}

// ---- LocalTTL, on a driven clock ----

// dropAll is an Invalidator whose messages are all lost: subscribed at
// once, it never delivers one.
type dropAll struct{}

func (dropAll) Publish(context.Context, memo.Invalidation) error { return nil }
func (dropAll) Subscribe(s memo.Subscriber) func() {
	s.Renewed()
	return func() {}
}

// TestLocalTierLocalTTL: a LocalTier in front of backends/memory, and
// another instance (its own function and tier) writing the backend. The
// reader's local copy is served until LocalTTL passes, then the new value;
// LocalTTL never extends a copy past the entry's Expire. Without an
// Invalidator (a single process) and with one whose messages are all
// lost: LocalTTL is the backstop either way.
func TestLocalTierLocalTTL(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type pair struct {
		clk    *clocktest.Clock
		be     *ltCounting
		src    *atomic.Int64
		runs   *atomic.Int64
		reader *memo.Func[int, int64]
		writer *memo.Func[int, int64]
	}
	newPair := func(t *testing.T, inv memo.Invalidator, opts ...memo.Option) pair {
		p := pair{clk: clocktest.New(start), be: &ltCounting{Backend: memory.New()}, src: new(atomic.Int64), runs: new(atomic.Int64)}
		ns := namespace("lt-ttl")
		mk := func() *memo.Func[int, int64] {
			tier := memo.NewLocalTier(1<<20, inv)
			t.Cleanup(tier.Close)
			o := append([]memo.Option{memo.Namespace(ns), memo.WithBackend(p.be), memo.WithLocalTier(tier),
				clocktest.MemoOption(p.clk).(memo.Option)}, opts...)
			return memo.New(func(context.Context, int) (int64, error) { p.runs.Add(1); return p.src.Load(), nil }, o...)
		}
		p.reader, p.writer = mk(), mk()
		return p
	}
	ctx := context.Background()
	// call checks the reader's answer and whether it read the backend.
	call := func(t *testing.T, p pair, when string, want int64, remote bool) {
		t.Helper()
		before := p.be.gets.Load()
		v, err := p.reader.Call(ctx, 1)
		if err != nil || v != want {
			t.Fatalf("%s: reader.Call = %d, %v; want %d", when, v, err, want)
		}
		if read := p.be.gets.Load() != before; read != remote {
			t.Fatalf("%s: reader.Call read the backend: %v, want %v", when, read, remote)
		}
	}

	for _, tc := range []struct {
		name string
		inv  memo.Invalidator
	}{{"no-invalidator", nil}, {"lost-messages", dropAll{}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("backstop", func(t *testing.T) {
				const ttl = 10 * time.Second
				p := newPair(t, tc.inv, memo.LocalTTL(ttl), memo.Expire(time.Hour))
				p.src.Store(1)
				call(t, p, "first call", 1, true)
				call(t, p, "second call", 1, false)
				if err := p.writer.Set(ctx, 1, 2); err != nil { // the other instance writes the backend
					t.Fatal(err)
				}
				call(t, p, "after the other instance's Set", 1, false)
				p.clk.Advance(ttl - time.Nanosecond)
				call(t, p, "LocalTTL-1ns after the fill", 1, false)
				p.clk.Advance(time.Nanosecond)
				call(t, p, "LocalTTL after the fill", 2, true)
				call(t, p, "refilled", 2, false)
				// The new copy has a LocalTTL of its own, from its fill.
				if err := p.writer.Set(ctx, 1, 3); err != nil {
					t.Fatal(err)
				}
				p.clk.Advance(ttl - time.Nanosecond)
				call(t, p, "LocalTTL-1ns after the refill", 2, false)
				p.clk.Advance(time.Nanosecond)
				call(t, p, "LocalTTL after the refill", 3, true)
				if n := p.runs.Load(); n != 1 {
					t.Errorf("fn ran %d times, want 1: every answer but the first was in the backend", n)
				}
			})
			t.Run("default", func(t *testing.T) {
				p := newPair(t, tc.inv) // no Expire: the entry never expires
				p.src.Store(1)
				call(t, p, "first call", 1, true)
				if err := p.writer.Set(ctx, 1, 2); err != nil {
					t.Fatal(err)
				}
				p.clk.Advance(memo.DefaultLocalTTL - time.Nanosecond)
				call(t, p, "DefaultLocalTTL-1ns after the fill", 1, false)
				p.clk.Advance(time.Nanosecond)
				call(t, p, "DefaultLocalTTL after the fill", 2, true)
			})
			t.Run("never-past-expire", func(t *testing.T) {
				const expire = 10 * time.Second
				p := newPair(t, tc.inv, memo.LocalTTL(time.Hour), memo.Expire(expire))
				p.src.Store(1)
				call(t, p, "first call", 1, true)
				// Halfway, the other instance writes: fresh until 15s.
				p.clk.Advance(expire / 2)
				if err := p.writer.Set(ctx, 1, 2); err != nil {
					t.Fatal(err)
				}
				p.clk.Advance(expire/2 - time.Nanosecond)
				call(t, p, "Expire-1ns after the fill", 1, false)
				p.clk.Advance(time.Nanosecond)
				call(t, p, "Expire after the fill (LocalTTL 1h)", 2, true)
				// With no other write: the copy ends at Expire and fn runs.
				p.src.Store(3)
				p.clk.Advance(expire)
				call(t, p, "the other instance's entry expired", 3, true)
				if n := p.runs.Load(); n != 2 {
					t.Errorf("fn ran %d times, want 2", n)
				}
			})
		})
	}
}
