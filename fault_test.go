package memo_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// faultBackend wraps an in-memory store and injects faults.
type faultBackend struct {
	mem      *memory.Backend
	getErr   error
	setErr   error
	stall    bool   // Get blocks until its ctx ends
	garbage  []byte // Get returns these bytes for every key
	calls    atomic.Int64
	setCalls atomic.Int64
}

func (f *faultBackend) store() *memory.Backend {
	if f.mem == nil {
		f.mem = memory.New()
	}
	return f.mem
}

func (f *faultBackend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	f.calls.Add(1)
	if f.stall {
		<-ctx.Done()
		return nil, false, ctx.Err()
	}
	if f.getErr != nil {
		return nil, false, f.getErr
	}
	if f.garbage != nil {
		return f.garbage, true, nil
	}
	return f.store().Get(ctx, key)
}

func (f *faultBackend) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	f.calls.Add(1)
	f.setCalls.Add(1)
	if f.setErr != nil {
		return f.setErr
	}
	return f.store().Set(ctx, key, v, ttl)
}

func (f *faultBackend) Delete(ctx context.Context, key string) error {
	f.calls.Add(1)
	return f.store().Delete(ctx, key)
}

// reports collects what OnError receives.
type reports struct {
	mu   sync.Mutex
	errs []error
}

func (r *reports) hook(_ context.Context, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *reports) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []string
	for _, err := range r.errs {
		var be *memo.BackendError
		if errors.As(err, &be) {
			ops = append(ops, be.Op)
		}
	}
	return ops
}

func TestFailOpen(t *testing.T) {
	errDown := errors.New("connection refused")
	tests := []struct {
		name    string
		fb      *faultBackend
		wantOps []string
	}{
		{"get error", &faultBackend{getErr: errDown}, []string{"get"}},
		{"set error", &faultBackend{setErr: errDown}, []string{"set"}},
		{"get and set error", &faultBackend{getErr: errDown, setErr: errDown}, []string{"get"}}, // a failed read skips the write
		{"stall past timeout", &faultBackend{stall: true}, []string{"get"}},
		{"too large", &faultBackend{setErr: memo.ErrTooLarge}, []string{"set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reports
			var c counter
			f := memo.New(c.fetch, memo.Namespace("failopen"), memo.WithBackend(tt.fb), memo.OnError(r.hook), memo.Timeout(20*time.Millisecond))
			start := time.Now()
			got, err := f.Call(context.Background(), 3)
			if err != nil {
				t.Fatalf("Call = %v; a cache fault must not fail the call", err)
			}
			if got.ID != 3 {
				t.Fatalf("Call(3) = %v, want fn's answer", got.ID)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Call took %v with a stalled backend", el)
			}
			// The write follows the answer: wait for its report.
			var ops []string
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(2 * time.Millisecond) {
				if ops = r.ops(); len(ops) >= len(tt.wantOps) || time.Now().After(deadline) {
					break
				}
			}
			if len(ops) != len(tt.wantOps) {
				t.Fatalf("reported ops %v, want %v", ops, tt.wantOps)
			}
			for i := range ops {
				if ops[i] != tt.wantOps[i] {
					t.Fatalf("reported ops %v, want %v", ops, tt.wantOps)
				}
			}
		})
	}
}

// Corrupt, truncated, foreign and unknown-version entries are misses that
// get overwritten, never a panic.
func TestCorruptEntries(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	var c counter
	f := memo.New(c.fetch, memo.Namespace("corrupt"), memo.WithBackend(mem), memo.OnError(func(context.Context, error) {}))
	f.Call(ctx, 1)
	good, _, _ := mem.Get(ctx, f.Key(1))
	good = append([]byte(nil), good...)
	otherVersion := append([]byte(nil), good...)
	otherVersion[1] = 99
	hugeLen := append([]byte(nil), good...)
	copy(hugeLen[3+len("json")+57:], []byte{0xff, 0xff, 0xff, 0xff}) // declared payload length 4 GiB
	wrongType := append([]byte(nil), good[:len(good)-1]...)          // truncated JSON
	cases := map[string][]byte{
		"empty":         {},
		"random":        []byte("\x8a\x01\x02garbage\x00"),
		"truncated":     good[:len(good)/2],
		"header only":   good[:20],
		"other version": otherVersion,
		"huge length":   hugeLen,
		"bad payload":   wrongType,
		"plain json":    []byte(`{"ID":1}`),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			if err := mem.Set(ctx, f.Key(1), bad, 0); err != nil {
				t.Fatal(err)
			}
			before := c.n.Load()
			got, err := f.Call(ctx, 1)
			if err != nil || got.ID != 1 {
				t.Fatalf("Call over a corrupt entry = %v, %v; want fn's answer", got.ID, err)
			}
			if c.n.Load() != before+1 {
				t.Fatalf("a corrupt entry was served as a hit")
			}
			if v, _, _ := mem.Get(ctx, f.Key(1)); len(v) < 55 || v[0] != 'm' {
				t.Fatalf("corrupt entry was not overwritten: %q", v)
			}
			c.n.Store(0)
			f.Call(ctx, 1)
			if c.n.Load() != 0 {
				t.Fatalf("after the overwrite the entry is still a miss")
			}
		})
	}
}

// socketBackend stands for a backend that stops at its context's deadline
// through socket deadlines: it never watches ctx.Done().
type socketBackend struct {
	faultBackend
	sawDeadline atomic.Int64 // the deadline's distance from the call, ns
}

func (s *socketBackend) DeadlineBounded() bool { return true }

func (s *socketBackend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return nil, false, errors.New("no deadline")
	}
	s.sawDeadline.Store(int64(time.Until(d)))
	time.Sleep(time.Until(d)) // the socket deadline passes
	return nil, false, context.DeadlineExceeded
}

// A DeadlineBounded backend gets the Timeout as a deadline, and a stalled
// call still ends in time.
func TestDeadlineBounded(t *testing.T) {
	sb := &socketBackend{}
	var r reports
	var c counter
	f := memo.New(c.fetch, memo.Namespace("deadline"), memo.WithBackend(sb), memo.OnError(r.hook), memo.Timeout(30*time.Millisecond))
	start := time.Now()
	got, err := f.Call(context.Background(), 9)
	if err != nil || got.ID != 9 {
		t.Fatalf("Call = %v, %v; want fn's answer", got.ID, err)
	}
	if d := time.Duration(sb.sawDeadline.Load()); d <= 0 || d > 30*time.Millisecond {
		t.Errorf("backend saw a deadline %v away, want within the 30ms Timeout", d)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Call took %v", el)
	}
	if ops := r.ops(); len(ops) == 0 || ops[0] != "get" {
		t.Errorf("reported %v, want the get timeout first", ops)
	}
}
