package dynamobackend_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/internal/testenv"
)

// UpdateItem (the lease calls) of the test APIs of api_test.go.

func (c *instrumented) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	ctx, err := c.enter(ctx, "UpdateItem")
	if err != nil {
		return nil, err
	}
	return c.next.UpdateItem(ctx, in, optFns...)
}

func (emptyTable) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return &dynamodb.UpdateItemOutput{}, nil
}

// leaseEnv is a backend over a fresh table, through an instrumented API,
// with the raw client beside it.
type leaseEnv struct {
	t      *testing.T
	client *dynamodb.Client
	table  string
	api    *instrumented
	b      *dynamobackend.Backend
	ns     string
}

func newLeaseEnv(t *testing.T, opts ...dynamobackend.Option) *leaseEnv {
	client := newClient(t)
	table := newTable(t, client)
	api := &instrumented{next: client}
	return &leaseEnv{t: t, client: client, table: table, api: api, b: dynamobackend.New(api, table, opts...), ns: testenv.NS(t, "lease")}
}

// raw returns the stored item of id, nil if there is none.
func (e *leaseEnv) raw(id string) map[string]types.AttributeValue {
	e.t.Helper()
	out, err := e.client.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &e.table, ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			dynamobackend.AttrNamespace: &types.AttributeValueMemberS{Value: e.ns},
			dynamobackend.AttrID:        &types.AttributeValueMemberS{Value: id},
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Item
}

// n returns the number attribute a of item, or -1 if it has none.
func (e *leaseEnv) n(item map[string]types.AttributeValue, a string) int64 {
	e.t.Helper()
	v, ok := item[a]
	if !ok {
		return -1
	}
	x, err := strconv.ParseInt(v.(*types.AttributeValueMemberN).Value, 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *leaseEnv) acquire(id string, ttl time.Duration, want bool) string {
	e.t.Helper()
	tok, ok, err := e.b.Acquire(context.Background(), e.ns+":"+id, ttl)
	if err != nil || ok != want {
		e.t.Fatalf("Acquire(%s) = %v, %v; want held=%v", id, ok, err, want)
	}
	return tok
}

// calls returns the number of calls of each data-plane method so far.
func (e *leaseEnv) calls() map[string]int {
	m := map[string]int{}
	for _, name := range append(dataPlane, "UpdateItem") {
		m[name] = e.api.count(name)
	}
	return m
}

// wantCalls checks the calls made since before: UpdateItem and PutItem as
// given, and nothing else (in particular no read: lease decisions never
// rest on a read, whatever ConsistentRead says).
func (e *leaseEnv) wantCalls(what string, before map[string]int, update, put int) {
	e.t.Helper()
	after := e.calls()
	for name, n := range after {
		d := n - before[name]
		want := 0
		switch name {
		case "UpdateItem":
			want = update
		case "PutItem":
			want = put
		}
		if d != want {
			e.t.Errorf("%s: %d %s calls, want %d", what, d, name, want)
		}
	}
}

// TestLeaseOnlyItemIsAMiss: a lease on a key with no item makes a
// lease-only item: no value, an expms of 0 (a miss for Get, whatever
// reads it), an exp at the lease's end (so that DynamoDB's Time to Live
// deletes it once the lease has ended), in one UpdateItem. The fenced
// write replaces it whole: value and expiry, no lease.
func TestLeaseOnlyItemIsAMiss(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		t.Run("ConsistentRead="+strconv.FormatBool(consistent), func(t *testing.T) {
			e := newLeaseEnv(t, dynamobackend.ConsistentRead(consistent))
			ctx := context.Background()
			before := e.calls()
			start := time.Now()
			tok := e.acquire("k", 5*time.Second, true)
			end := time.Now()
			e.wantCalls("Acquire of a missing key", before, 1, 0)
			testenv.WantGet(t, e.b, e.ns+":k", "")

			it := e.raw("k")
			if _, ok := it[dynamobackend.AttrValue]; ok {
				t.Errorf("lease-only item has a %s", dynamobackend.AttrValue)
			}
			if got := it[dynamobackend.AttrLease]; got == nil || got.(*types.AttributeValueMemberS).Value != tok {
				t.Errorf("%s = %v, want the token %q", dynamobackend.AttrLease, got, tok)
			}
			lms := e.n(it, dynamobackend.AttrLeaseMillis)
			if lo, hi := start.Add(5*time.Second).UnixMilli(), end.Add(5*time.Second).UnixMilli()+1; lms < lo || lms > hi {
				t.Errorf("%s = %d, want in [%d, %d]", dynamobackend.AttrLeaseMillis, lms, lo, hi)
			}
			if ms := e.n(it, dynamobackend.AttrExpiryMillis); ms != 0 {
				t.Errorf("%s = %d, want 0 (expired: a miss)", dynamobackend.AttrExpiryMillis, ms)
			}
			if s := e.n(it, dynamobackend.AttrExpiry); s*1000 < lms || s*1000 >= lms+1000 {
				t.Errorf("%s = %d, want the lease's end %d rounded up to seconds, for Time to Live", dynamobackend.AttrExpiry, s, lms)
			}

			before = e.calls()
			if stored, err := e.b.SetFenced(ctx, e.ns+":k", []byte("v"), time.Minute, tok); !stored || err != nil {
				t.Fatalf("SetFenced = %v, %v", stored, err)
			}
			e.wantCalls("SetFenced", before, 0, 1)
			testenv.WantGet(t, e.b, e.ns+":k", "v")
			it = e.raw("k")
			for _, a := range []string{dynamobackend.AttrLease, dynamobackend.AttrLeaseMillis} {
				if _, ok := it[a]; ok {
					t.Errorf("item after the fenced write has %s", a)
				}
			}
			if ms := e.n(it, dynamobackend.AttrExpiryMillis); ms < time.Now().Add(59*time.Second).UnixMilli() {
				t.Errorf("%s = %d after the fenced write, want its own ttl", dynamobackend.AttrExpiryMillis, ms)
			}
		})
	}
}

// TestLeaseOnLiveValue: a lease on a key holding a live value (a refresh)
// leaves the value, its expiry and its absence of expiry as they are
// (readers still hit), in two UpdateItems; held, a second Acquire costs
// two and fails; Release leaves the value.
func TestLeaseOnLiveValue(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		id  string
		ttl time.Duration
	}{{"ttl", time.Minute}, {"forever", 0}} {
		key := e.ns + ":" + c.id
		if err := e.b.Set(ctx, key, []byte("old"), c.ttl); err != nil {
			t.Fatal(err)
		}
		was := e.raw(c.id)
		before := e.calls()
		tok := e.acquire(c.id, time.Minute, true)
		e.wantCalls("Acquire on a live value", before, 2, 0)
		testenv.WantGet(t, e.b, key, "old")
		it := e.raw(c.id)
		for _, a := range []string{dynamobackend.AttrExpiry, dynamobackend.AttrExpiryMillis} {
			if e.n(it, a) != e.n(was, a) {
				t.Errorf("%s: %s = %d under the lease, was %d", c.id, a, e.n(it, a), e.n(was, a))
			}
		}
		before = e.calls()
		e.acquire(c.id, time.Minute, false)
		e.wantCalls("Acquire of a held lease", before, 2, 0)
		if err := e.b.Release(ctx, key, tok); err != nil {
			t.Fatal(err)
		}
		testenv.WantGet(t, e.b, key, "old")
		if it := e.raw(c.id); it[dynamobackend.AttrLease] != nil || it[dynamobackend.AttrLeaseMillis] != nil {
			t.Errorf("%s: lease attributes left after Release: %v", c.id, it)
		}
		if stored, err := e.b.SetFenced(ctx, key, []byte("new"), 0, tok); stored || err != nil {
			t.Errorf("%s: SetFenced after Release = %v, %v; want not stored", c.id, stored, err)
		}
	}
}

// TestLeaseOnExpiredItem: an expired item DynamoDB has not deleted yet is
// a miss, and a lease on it makes it lease-only in one UpdateItem (the
// dead value's bytes go).
func TestLeaseOnExpiredItem(t *testing.T) {
	e := newLeaseEnv(t)
	past := time.Now().Add(-time.Second)
	putRaw(t, e.client, e.table, e.ns, "old", map[string]types.AttributeValue{
		dynamobackend.AttrExpiry:       num(past.Unix() + 1),
		dynamobackend.AttrExpiryMillis: num(past.UnixMilli()),
	})
	before := e.calls()
	e.acquire("old", time.Minute, true)
	e.wantCalls("Acquire on an expired item", before, 1, 0)
	it := e.raw("old")
	if _, ok := it[dynamobackend.AttrValue]; ok {
		t.Error("the expired value is still there")
	}
	if ms := e.n(it, dynamobackend.AttrExpiryMillis); ms != 0 {
		t.Errorf("%s = %d, want 0", dynamobackend.AttrExpiryMillis, ms)
	}
	if s := e.n(it, dynamobackend.AttrExpiry); s < time.Now().Add(59*time.Second).Unix() {
		t.Errorf("%s = %d, want the lease's end (Time to Live must not delete the item under the lease)", dynamobackend.AttrExpiry, s)
	}
	testenv.WantGet(t, e.b, e.ns+":old", "")
}

// TestLeaseEnds: a lease whose ttl has passed lets SetFenced store nothing
// even when no one took it since, and another Acquire take it; a
// released or voided lease-only item stays a miss; Void and Release of a
// key without an item create none.
func TestLeaseEnds(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	tok := e.acquire("k", 300*time.Millisecond, true)
	time.Sleep(400 * time.Millisecond)
	if stored, err := e.b.SetFenced(ctx, e.ns+":k", []byte("late"), time.Minute, tok); stored || err != nil {
		t.Errorf("SetFenced after the lease's ttl = %v, %v; want not stored", stored, err)
	}
	testenv.WantGet(t, e.b, e.ns+":k", "")
	tok = e.acquire("k", time.Minute, true)
	if err := e.b.Release(ctx, e.ns+":k", tok); err != nil {
		t.Fatal(err)
	}
	testenv.WantGet(t, e.b, e.ns+":k", "")
	e.acquire("k", time.Minute, true)
	if err := e.b.Void(ctx, e.ns+":k"); err != nil {
		t.Fatal(err)
	}
	testenv.WantGet(t, e.b, e.ns+":k", "")
	if err := e.b.Delete(ctx, e.ns+":k"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return e.b.Void(ctx, e.ns+":none") },
		func() error { return e.b.Release(ctx, e.ns+":none", tok) },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, e.client, e.table, e.ns); n != 0 {
		t.Errorf("%d items in the namespace after Void and Release of missing keys, want 0", n)
	}
}

// TestPlainSetEndsLease: a plain Set replaces the whole item, lease
// included: the holder's write then stores nothing, and the Set's value
// stays (the documented behaviour of a write that bypasses the lease).
func TestPlainSetEndsLease(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	tok := e.acquire("k", time.Minute, true)
	if err := e.b.Set(ctx, e.ns+":k", []byte("set"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if stored, err := e.b.SetFenced(ctx, e.ns+":k", []byte("fenced"), time.Minute, tok); stored || err != nil {
		t.Errorf("SetFenced after a plain Set = %v, %v; want not stored", stored, err)
	}
	testenv.WantGet(t, e.b, e.ns+":k", "set")
}

// TestLeaseTooLarge: a fenced write of an item over the limit is refused
// without a PutItem and releases the lease.
func TestLeaseTooLarge(t *testing.T) {
	e := newLeaseEnv(t)
	tok := e.acquire("k", time.Minute, true)
	stored, err := e.b.SetFenced(context.Background(), e.ns+":k", make([]byte, dynamobackend.MaxItemSize), time.Minute, tok)
	if stored || !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("SetFenced of a 400 KB value = %v, %v; want memo.ErrTooLarge", stored, err)
	}
	e.acquire("k", time.Minute, true)
}

// wireCount is the HTTP client under a *dynamodb.Client: it counts the
// UpdateItem requests, and those that did not come through instrumented.
type wireCount struct {
	mu              sync.Mutex
	total, unmarked int
}

func (w *wireCount) Do(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".UpdateItem") {
		w.mu.Lock()
		w.total++
		if m, _ := req.Context().Value(viaAPI{}).(string); m != "UpdateItem" {
			w.unmarked++
		}
		w.mu.Unlock()
	}
	return http.DefaultClient.Do(req)
}

// TestLeaseThroughAPI makes every kind of lease call through a wrapper
// API and checks on the wire that every UpdateItem (the call the leases
// add to the API) came through it, as TestConformanceThroughAPI does for
// the other calls (and that suite's lease tests pass through the same
// wrapper).
func TestLeaseThroughAPI(t *testing.T) {
	wire := &wireCount{}
	client := newClient(t, func(o *dynamodb.Options) { o.HTTPClient = wire })
	table := newTable(t, client)
	api := &instrumented{next: client}
	b := dynamobackend.New(api, table)
	ctx := context.Background()
	key := testenv.NS(t, "wire") + ":k"
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	tok, _, err := b.Acquire(ctx, key, time.Minute) // a lease-only item
	step("Acquire", err)
	_, _, err = b.Acquire(ctx, key, time.Minute) // held: two UpdateItems
	step("Acquire held", err)
	step("Release", b.Release(ctx, key, tok))
	tok, _, err = b.Acquire(ctx, key, time.Minute)
	step("Acquire", err)
	_, err = b.SetFenced(ctx, key, []byte("v"), time.Minute, tok)
	step("SetFenced", err)
	_, _, err = b.Acquire(ctx, key, time.Minute) // on a live value
	step("Acquire live", err)
	step("Void", b.Void(ctx, key))
	wire.mu.Lock()
	defer wire.mu.Unlock()
	if n := api.count("UpdateItem"); wire.total != n || wire.unmarked != 0 || n != 8 {
		t.Errorf("UpdateItem: %d requests on the wire, %d not through the wrapper, %d wrapper calls; want 8, 0, 8",
			wire.total, wire.unmarked, n)
	}
}

// TestLeaseFaults: an UpdateItem that fails makes Acquire fail (memo then
// computes unfenced and reports it) and Void fail (memo's Set then writes
// nothing and returns it).
func TestLeaseFaults(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	errInjected := errors.New("injected")
	e.api.failWith("UpdateItem", errInjected)
	if _, ok, err := e.b.Acquire(ctx, e.ns+":k", time.Minute); ok || !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "dynamobackend: lease") {
		t.Errorf("Acquire with UpdateItem failing = %v, %v; want an error", ok, err)
	}
	if err := e.b.Void(ctx, e.ns+":k"); !errors.Is(err, errInjected) {
		t.Error("Void with UpdateItem failing = nil")
	}
	e.api.failWith("UpdateItem", nil)
	e.acquire("k", time.Minute, true)
}
