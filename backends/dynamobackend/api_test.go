package dynamobackend_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/internal/testenv"
)

// dataPlane lists the methods of dynamobackend.API.
var dataPlane = []string{"GetItem", "PutItem", "DeleteItem", "Query", "BatchWriteItem"}

// viaAPI is the context key under which instrumented marks the calls it
// passes on, with the method's name.
type viaAPI struct{}

// instrumented is a dynamobackend.API in front of next, as a user's
// metrics or fault-injection wrapper would be: it counts the calls of each
// method, keeps the last GetItem and Query inputs, fails the methods
// given to failWith (without calling next), and marks the ctx of every
// call it passes on (viaAPI).
type instrumented struct {
	next dynamobackend.API

	mu        sync.Mutex
	calls     map[string]int
	fail      map[string]error
	lastGet   *dynamodb.GetItemInput
	lastQuery *dynamodb.QueryInput
}

var _ dynamobackend.API = (*instrumented)(nil)

// enter counts a call of method and returns the ctx to pass on and the
// error to inject, if any.
func (c *instrumented) enter(ctx context.Context, method string) (context.Context, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[method]++
	return context.WithValue(ctx, viaAPI{}, method), c.fail[method]
}

// failWith makes method fail with err from now on; a nil err heals it.
func (c *instrumented) failWith(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail == nil {
		c.fail = map[string]error{}
	}
	c.fail[method] = err
}

func (c *instrumented) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

func (c *instrumented) GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	ctx, err := c.enter(ctx, "GetItem")
	c.mu.Lock()
	c.lastGet = in
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.next.GetItem(ctx, in, optFns...)
}

func (c *instrumented) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	ctx, err := c.enter(ctx, "PutItem")
	if err != nil {
		return nil, err
	}
	return c.next.PutItem(ctx, in, optFns...)
}

func (c *instrumented) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	ctx, err := c.enter(ctx, "DeleteItem")
	if err != nil {
		return nil, err
	}
	return c.next.DeleteItem(ctx, in, optFns...)
}

func (c *instrumented) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	ctx, err := c.enter(ctx, "Query")
	c.mu.Lock()
	c.lastQuery = in
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.next.Query(ctx, in, optFns...)
}

func (c *instrumented) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	ctx, err := c.enter(ctx, "BatchWriteItem")
	if err != nil {
		return nil, err
	}
	return c.next.BatchWriteItem(ctx, in, optFns...)
}

// emptyTable is an API over a table that stays empty: reads miss, writes
// succeed and are forgotten. It needs no server.
type emptyTable struct{}

func (emptyTable) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return &dynamodb.GetItemOutput{}, nil
}

func (emptyTable) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return &dynamodb.PutItemOutput{}, nil
}

func (emptyTable) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return &dynamodb.DeleteItemOutput{}, nil
}

func (emptyTable) Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return &dynamodb.QueryOutput{}, nil
}

func (emptyTable) BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return &dynamodb.BatchWriteItemOutput{}, nil
}

// wireAudit is the HTTP client under a *dynamodb.Client: it records the
// data-plane requests that did not come through instrumented (no viaAPI
// mark on their ctx) and those whose operation is not the method that
// marked them.
type wireAudit struct {
	next http.RoundTripper

	mu       sync.Mutex
	marked   map[string]int
	bypassed map[string]int
	mismatch []string
}

func (w *wireAudit) Do(req *http.Request) (*http.Response, error) {
	target := req.Header.Get("X-Amz-Target")
	op := target[strings.LastIndexByte(target, '.')+1:]
	method, _ := req.Context().Value(viaAPI{}).(string)
	w.mu.Lock()
	switch {
	case method == "":
		for _, m := range dataPlane {
			if op == m {
				if w.bypassed == nil {
					w.bypassed = map[string]int{}
				}
				w.bypassed[op]++
			}
		}
	case method != op:
		w.mismatch = append(w.mismatch, method+" sent "+op)
	default:
		if w.marked == nil {
			w.marked = map[string]int{}
		}
		w.marked[op]++
	}
	w.mu.Unlock()
	return w.next.RoundTrip(req)
}

// TestConformanceThroughAPI runs the conformance suite on a backend whose
// client is a wrapper (instrumented) around a *dynamodb.Client, and checks
// on the wire that every data-plane request of the suite came through the
// wrapper: New keeps no hidden path to the SDK client, so a DAX client or
// an instrumented one sees every call.
func TestConformanceThroughAPI(t *testing.T) {
	audit := &wireAudit{next: http.DefaultTransport}
	client := newClient(t, func(o *dynamodb.Options) { o.HTTPClient = audit })
	table := newTable(t, client)
	api := &instrumented{next: client}
	// Cleanups run after every subtest, parallel ones included.
	t.Cleanup(func() {
		audit.mu.Lock()
		defer audit.mu.Unlock()
		if len(audit.bypassed) > 0 {
			t.Errorf("data-plane requests that bypassed the API wrapper, by operation: %v", audit.bypassed)
		}
		if len(audit.mismatch) > 0 {
			t.Errorf("requests for another operation than the wrapper's method: %v", audit.mismatch)
		}
		for _, m := range dataPlane {
			n := api.count(m)
			if n == 0 || audit.marked[m] == 0 {
				t.Errorf("%s: %d calls through the wrapper, %d requests on the wire; want both > 0", m, n, audit.marked[m])
			}
			t.Logf("%s: %d calls through the wrapper, %d requests on the wire", m, n, audit.marked[m])
		}
	})
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return dynamobackend.New(api, table)
	}, backendtest.Options{TooLarge: 500 << 10, MaxValue: 300 << 10, ExpirySlack: time.Second})
}

// TestConsistentReadOption: Get asks for a strongly consistent GetItem by
// default and an eventually consistent one with ConsistentRead(false), on
// the input the API receives; Clear queries consistently either way.
// (dynalite is always consistent, so only the request can be checked.)
func TestConsistentReadOption(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		opts []dynamobackend.Option
		want bool
	}{
		{"default", nil, true},
		{"ConsistentRead(true)", []dynamobackend.Option{dynamobackend.ConsistentRead(true)}, true},
		{"ConsistentRead(false)", []dynamobackend.Option{dynamobackend.ConsistentRead(false)}, false},
		{"last wins", []dynamobackend.Option{dynamobackend.ConsistentRead(false), dynamobackend.ConsistentRead(true)}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			api := &instrumented{next: emptyTable{}}
			b := dynamobackend.New(api, "memo", c.opts...)
			if v, ok, err := b.Get(ctx, "ns:k"); v != nil || ok || err != nil {
				t.Fatalf("Get on an empty table = %q, %v, %v; want a miss", v, ok, err)
			}
			in := api.lastGet
			switch {
			case in == nil:
				t.Fatal("Get made no GetItem call through the API")
			case in.ConsistentRead == nil:
				t.Errorf("GetItem ConsistentRead = nil (the server's default, eventual), want %v set explicitly", c.want)
			case *in.ConsistentRead != c.want:
				t.Errorf("GetItem ConsistentRead = %v, want %v", *in.ConsistentRead, c.want)
			}
			if in != nil && aws.ToString(in.TableName) != "memo" {
				t.Errorf("GetItem TableName = %q, want %q", aws.ToString(in.TableName), "memo")
			}
			if err := b.Clear(ctx, "ns"); err != nil {
				t.Fatalf("Clear = %v", err)
			}
			if q := api.lastQuery; q == nil || !aws.ToBool(q.ConsistentRead) {
				t.Errorf("Clear's Query = %+v, want ConsistentRead true", q)
			}
		})
	}
}

// TestInjectedErrorsAreFaults: an error returned by the API, for each of
// its methods, comes out of the backend wrapped (errors.Is finds it) and
// is a memo fault: Call still returns fn's answer and reports the fault to
// OnError; Forget and Clear return it as a *memo.BackendError.
func TestInjectedErrorsAreFaults(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	api := &instrumented{next: client}
	b := dynamobackend.New(api, table)
	ctx := context.Background()
	errInjected := errors.New("injected by the test's API wrapper")

	var (
		mu     sync.Mutex
		faults []error
		runs   atomic.Int64
	)
	takeFaults := func() []error {
		mu.Lock()
		defer mu.Unlock()
		f := faults
		faults = nil
		return f
	}
	f := memo.New(func(_ context.Context, id int) (string, error) {
		runs.Add(1)
		return fmt.Sprintf("answer %d", id), nil
	}, memo.WithBackend(b), memo.Namespace(testenv.NS(t, "faults")), memo.OnError(func(_ context.Context, err error) {
		mu.Lock()
		faults = append(faults, err)
		mu.Unlock()
	}))
	// call wants fn's answer for id, with or without a fault, and reports
	// whether fn ran.
	call := func(id int) bool {
		t.Helper()
		before := runs.Load()
		got, err := f.Call(ctx, id)
		if want := fmt.Sprintf("answer %d", id); got != want || err != nil {
			t.Fatalf("Call(%d) = %q, %v; want %q, nil", id, got, err, want)
		}
		return runs.Load() > before
	}
	// wantFault checks that err (nil: the one fault reported to OnError)
	// is a *memo.BackendError of op wrapping errInjected, from method.
	wantFault := func(method, op string, err error) {
		t.Helper()
		if err == nil {
			fs := takeFaults()
			if len(fs) != 1 {
				t.Fatalf("%s failing: %d faults reported (%v), want 1", method, len(fs), fs)
			}
			err = fs[0]
		}
		var be *memo.BackendError
		if !errors.As(err, &be) || be.Op != op || !errors.Is(err, errInjected) {
			t.Errorf("%s failing: fault %v (%T), want a *memo.BackendError of op %q wrapping the injected error", method, err, err, op)
		}
		if !strings.Contains(err.Error(), "dynamobackend: "+op) {
			t.Errorf("%s failing: fault %q does not name the backend's operation", method, err)
		}
	}
	fail := func(method string) func() {
		n := api.count(method)
		api.failWith(method, errInjected)
		return func() {
			api.failWith(method, nil)
			if api.count(method) == n {
				t.Errorf("%s was never called while it failed", method)
			}
		}
	}

	// GetItem fails: a miss; fn answers.
	heal := fail("GetItem")
	if !call(1) {
		t.Error("Call(1) with GetItem failing did not run fn")
	}
	wantFault("GetItem", "get", nil)
	heal()

	// PutItem fails: fn's answer is returned, not stored.
	heal = fail("PutItem")
	if !call(2) {
		t.Error("Call(2) on a cold key did not run fn")
	}
	wantFault("PutItem", "set", nil)
	heal()
	if !call(2) {
		t.Error("Call(2) after a failed write hit: something was stored")
	}
	if call(2) {
		t.Error("Call(2) after a successful write ran fn again")
	}

	// DeleteItem fails: Forget reports it; the entry remains.
	heal = fail("DeleteItem")
	wantFault("DeleteItem", "delete", f.Forget(ctx, 2))
	heal()
	if call(2) {
		t.Error("Call(2) after a failed Forget ran fn: the entry was deleted")
	}

	// Query fails, then BatchWriteItem: Clear reports each.
	heal = fail("Query")
	wantFault("Query", "clear", f.Clear(ctx))
	heal()
	heal = fail("BatchWriteItem")
	wantFault("BatchWriteItem", "clear", f.Clear(ctx))
	heal()
	if call(2) {
		t.Error("Call(2) after failed Clears ran fn: the entry was deleted")
	}
	if err := f.Clear(ctx); err != nil {
		t.Fatalf("Clear, healed = %v", err)
	}
	if !call(2) {
		t.Error("Call(2) after Clear hit")
	}
	if fs := takeFaults(); len(fs) != 0 {
		t.Errorf("faults with nothing failing: %v", fs)
	}
}
