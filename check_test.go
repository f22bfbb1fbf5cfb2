package memo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
	"github.com/gomemo/memo/internal/faultproxy"
	"github.com/gomemo/memo/internal/testenv"
)

func ExampleCheck() {
	b := memory.New() // in main: redisbackend.New(rdb), dynamobackend.New(client, table), ...
	if err := memo.Check(context.Background(), b); err != nil {
		fmt.Println("cache unusable:", err) // in main: log.Fatal
		return
	}
	memo.SetDefaults(memo.WithBackend(b))
	defer memo.ResetDefaults()
	fmt.Println("cache ready")
	// Output: cache ready
}

// probe wraps a Backend and records the calls Check makes, so that a test
// can see the probe key and that it is gone.
type probe struct {
	memo.Backend
	mu   sync.Mutex
	ops  []string
	keys map[string]bool
}

func newProbe(b memo.Backend) *probe { return &probe{Backend: b, keys: map[string]bool{}} }

func (p *probe) record(op, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ops = append(p.ops, op)
	p.keys[key] = true
}

func (p *probe) Get(ctx context.Context, key string) ([]byte, bool, error) {
	p.record("get", key)
	return p.Backend.Get(ctx, key)
}

func (p *probe) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	p.record("set", key)
	return p.Backend.Set(ctx, key, v, ttl)
}

func (p *probe) Delete(ctx context.Context, key string) error {
	p.record("delete", key)
	return p.Backend.Delete(ctx, key)
}

// key returns the one key Check used, failing t if it used several.
func (p *probe) key(t *testing.T) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.keys) != 1 {
		t.Fatalf("Check used keys %v, want one", p.keys)
	}
	for k := range p.keys {
		return k
	}
	return ""
}

// wantHealthy checks b with Check, wants nil, and checks that the probe
// key was "memo:check:<id>", written, read and deleted.
func wantHealthy(t *testing.T, b memo.Backend) {
	t.Helper()
	p := newProbe(b)
	if err := memo.Check(context.Background(), p); err != nil {
		t.Fatalf("Check() = %v, want nil", err)
	}
	key := p.key(t)
	ns, id, _ := memo.SplitKey(key)
	if ns != "memo:check" || id == "" {
		t.Errorf("Check's key = %q, want memo:check:<id>", key)
	}
	if got, want := strings.Join(p.ops, ","), "set,get,delete"; got != want {
		t.Errorf("Check's calls = %s, want %s", got, want)
	}
	testenv.WantGet(t, b, key, "") // deleted
}

// wantFault checks b with Check under ctx and wants a *memo.BackendError
// for op; it returns the error.
func wantFault(t *testing.T, ctx context.Context, b memo.Backend, op string) error {
	t.Helper()
	err := memo.Check(ctx, b)
	var be *memo.BackendError
	if !errors.As(err, &be) {
		t.Fatalf("Check() = %v, want a *memo.BackendError", err)
	}
	if be.Op != op || !strings.HasPrefix(be.Key, "memo:check:") {
		t.Fatalf("Check() = %v: Op %q, Key %q; want Op %q, Key memo:check:<id>", err, be.Op, be.Key, op)
	}
	t.Logf("Check() = %v", err)
	return err
}

// noLeak fails t if a goroutine started during it is still running once
// its cleanups (clients, proxies) have run.
func noLeak(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func redisClient(t *testing.T, opts redis.Options) memo.Backend {
	t.Helper()
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(&opts)
	t.Cleanup(func() { c.Close() })
	return redisbackend.New(c)
}

func TestCheckHealthy(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    func(t *testing.T) memo.Backend
	}{
		{"memory", func(t *testing.T) memo.Backend { return memory.New() }},
		{"redis", func(t *testing.T) memo.Backend {
			noLeak(t)
			return redisClient(t, redis.Options{Addr: testenv.Require(t, "MEMO_REDIS_ADDR")})
		}},
		{"memcached", func(t *testing.T) memo.Backend {
			noLeak(t)
			return memcachebackend.New(memcache.New(testenv.Require(t, "MEMO_MEMCACHED_ADDR")))
		}},
		{"dynamodb", func(t *testing.T) memo.Backend {
			client := dynamoClient(t)
			table := fmt.Sprintf("memo-check-%x", rand.Uint64())
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := dynamobackend.CreateTable(ctx, client, table); err != nil {
				t.Fatalf("CreateTable: %v", err)
			}
			t.Cleanup(func() {
				client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
			})
			return dynamobackend.New(client, table)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantHealthy(t, tc.b(t)) })
	}
}

func dynamoClient(t *testing.T) *dynamodb.Client {
	t.Helper()
	return dynamodb.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("x", "x", ""),
		BaseEndpoint: aws.String(testenv.Require(t, "MEMO_DYNAMODB_ENDPOINT")),
	})
}

// TestCheckWrongPassword: a client whose password the server refuses fails
// the first step with the server's WRONGPASS error. The test Redis runs
// without a password, and its default user then accepts any password
// (go-redis sends HELLO 3 AUTH default <password>, which Redis 7 takes),
// so the test makes a user of its own with a password, as an ACL
// deployment has.
func TestCheckWrongPassword(t *testing.T) {
	noLeak(t)
	addr := testenv.Require(t, "MEMO_REDIS_ADDR")
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	user := fmt.Sprintf("memo-check-%x", rand.Uint64())
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">right", "~memo:*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(ctx, "ACL", "DELUSER", user) })

	wantHealthy(t, redisClient(t, redis.Options{Addr: addr, Username: user, Password: "right"}))
	b := redisClient(t, redis.Options{Addr: addr, Username: user, Password: "wrong"})
	if err := wantFault(t, ctx, b, "set"); !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("Check() = %v, want a WRONGPASS error", err)
	}
}

// TestCheckMissingTable: a table that does not exist fails the write.
func TestCheckMissingTable(t *testing.T) {
	b := dynamobackend.New(dynamoClient(t), fmt.Sprintf("memo-no-such-table-%x", rand.Uint64()))
	err := wantFault(t, context.Background(), b, "set")
	if !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Errorf("Check() = %v, want a ResourceNotFoundException", err)
	}
}

// TestCheckClosedPort: nothing listens at the address (a port that
// refuses, and one that refuses after having answered): the write fails
// before ctx's deadline.
func TestCheckClosedPort(t *testing.T) {
	noLeak(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	p := faultproxy.New(t, testenv.Require(t, "MEMO_REDIS_ADDR"))
	viaProxy := redisClient(t, redis.Options{Addr: p.Addr(), MaxRetries: -1})
	wantHealthy(t, viaProxy)
	p.Set(faultproxy.Refuse)

	for _, tc := range []struct {
		name string
		b    memo.Backend
	}{
		{"never open", redisClient(t, redis.Options{Addr: closed, MaxRetries: -1})},
		{"closed after use", viaProxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := wantFault(t, ctx, tc.b, "set")
			if ctx.Err() != nil {
				t.Errorf("Check() = %v after ctx ended, want a refusal before", err)
			}
			if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "reset") {
				t.Errorf("Check() = %v, want a refused or reset connection", err)
			}
		})
	}
}

// TestCheckStalled: a Redis that accepts and never answers fails Check
// when ctx ends, or, when ctx has no deadline, when the step's own bound
// ends (go-redis's ReadTimeout is a minute here: the test would take that
// long without the bound).
func TestCheckStalled(t *testing.T) {
	noLeak(t)
	p := faultproxy.New(t, testenv.Require(t, "MEMO_REDIS_ADDR"))
	b := redisClient(t, redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	wantHealthy(t, b)
	p.Set(faultproxy.Stall)

	for _, tc := range []struct {
		name string
		d    time.Duration // ctx's deadline; 0: none
	}{{"ctx deadline", 200 * time.Millisecond}, {"no deadline", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.d)
				defer cancel()
			}
			err := wantFault(t, ctx, b, "set")
			// go-redis's socket deadline may fire just before the
			// context's timer: an i/o timeout then, not yet the ctx's
			// DeadlineExceeded.
			var ne net.Error
			if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Errorf("Check() = %v, want a timeout", err)
			}
		})
	}
}

// blocking is a Backend whose calls wait for their ctx to end. It records
// the deadline of each ctx it gets.
type blocking struct {
	memo.Backend
	deadlines []time.Time
}

func (b *blocking) wait(ctx context.Context) error {
	d, ok := ctx.Deadline()
	if !ok {
		return errors.New("no deadline")
	}
	b.deadlines = append(b.deadlines, d)
	<-ctx.Done()
	return ctx.Err()
}

func (b *blocking) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return b.wait(ctx)
}

// TestCheckBound: without a deadline on ctx, a step gets one of
// 10 x DefaultTimeout; with one, Check keeps it.
func TestCheckBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name string
			d    time.Duration // ctx's deadline; 0: none
			want time.Duration // the step's deadline
		}{
			{"no deadline", 0, 10 * memo.DefaultTimeout},
			{"shorter", 50 * time.Millisecond, 50 * time.Millisecond},
			{"longer", time.Hour, time.Hour},
		} {
			ctx := context.Background()
			if tc.d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.d)
				defer cancel()
			}
			start := time.Now()
			b := &blocking{Backend: memory.New()}
			err := memo.Check(ctx, b)
			if !errors.Is(err, context.DeadlineExceeded) || len(b.deadlines) != 1 {
				t.Fatalf("%s: Check() = %v after %d calls, want DeadlineExceeded after 1", tc.name, err, len(b.deadlines))
			}
			if got := b.deadlines[0].Sub(start); got != tc.want {
				t.Errorf("%s: Set's deadline = start + %v, want start + %v", tc.name, got, tc.want)
			}
			if got := time.Since(start); got != tc.want {
				t.Errorf("%s: Check() returned after %v, want %v", tc.name, got, tc.want)
			}
		}
	})
}

// TestCheckCancelled: a ctx already done fails the first step.
func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := wantFault(t, ctx, memory.New(), "set")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Check() = %v, want it to wrap context.Canceled", err)
	}
}

// fake is a memory backend with faults: a failing call, or a Get that
// lies.
type fake struct {
	*probe
	failOp string                      // this call fails
	get    func([]byte) ([]byte, bool) // what Get returns instead
}

var errFake = errors.New("injected fault")

func (f *fake) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if f.failOp == "set" {
		f.probe.record("set", key)
		return errFake
	}
	return f.probe.Set(ctx, key, v, ttl)
}

func (f *fake) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, ok, err := f.probe.Get(ctx, key)
	if f.failOp == "get" {
		return nil, false, errFake
	}
	if f.get != nil && err == nil {
		v, ok = f.get(v)
	}
	return v, ok, err
}

func (f *fake) Delete(ctx context.Context, key string) error {
	if err := f.probe.Delete(ctx, key); err != nil || f.failOp == "delete" {
		return errors.Join(err, errFake)
	}
	return nil
}

// TestCheckFaults: each failing step, and every way a read can lie, is a
// *memo.BackendError naming the step; after a failed read Check still
// deletes its key.
func TestCheckFaults(t *testing.T) {
	noLeak(t)
	for _, tc := range []struct {
		name    string
		failOp  string
		get     func([]byte) ([]byte, bool)
		wantOp  string
		wantOps string // the calls Check makes
		wantErr error  // wrapped by Check's error, when not nil
	}{
		{name: "set fails", failOp: "set", wantOp: "set", wantOps: "set", wantErr: errFake},
		{name: "get fails", failOp: "get", wantOp: "get", wantOps: "set,get,delete", wantErr: errFake},
		{name: "delete fails", failOp: "delete", wantOp: "delete", wantOps: "set,get,delete", wantErr: errFake},
		{name: "get misses", get: func([]byte) ([]byte, bool) { return nil, false }, wantOp: "get", wantOps: "set,get,delete"},
		{name: "get returns nothing", get: func([]byte) ([]byte, bool) { return nil, true }, wantOp: "get", wantOps: "set,get,delete"},
		{name: "get returns other bytes", get: func(v []byte) ([]byte, bool) {
			w := bytes.Clone(v)
			w[len(w)/2] ^= 1
			return w, true
		}, wantOp: "get", wantOps: "set,get,delete"},
		{name: "get returns a prefix", get: func(v []byte) ([]byte, bool) { return v[:len(v)-1], true }, wantOp: "get", wantOps: "set,get,delete"},
		{name: "get returns text only", get: func(v []byte) ([]byte, bool) { // a store that is not binary-safe
			return bytes.Map(func(r rune) rune {
				if r < ' ' || r > '~' {
					return -1
				}
				return r
			}, v), true
		}, wantOp: "get", wantOps: "set,get,delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.New()
			f := &fake{probe: newProbe(mem), failOp: tc.failOp, get: tc.get}
			err := wantFault(t, context.Background(), f, tc.wantOp)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Check() = %v, want it to wrap %v", err, tc.wantErr)
			}
			if got := strings.Join(f.ops, ","); got != tc.wantOps {
				t.Errorf("Check's calls = %s, want %s", got, tc.wantOps)
			}
			if tc.failOp != "delete" {
				testenv.WantGet(t, mem, f.key(t), "") // cleaned up
			}
		})
	}
}

func TestCheckNil(t *testing.T) {
	for _, b := range []memo.Backend{nil, (*memory.Backend)(nil)} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "memo: ") {
					t.Errorf("Check(ctx, %#v) panic = %v, want a memo: panic", b, r)
				}
			}()
			memo.Check(context.Background(), b)
		}()
	}
}
