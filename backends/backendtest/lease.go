package backendtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// RunLeaser checks a backend's [memo.Leaser]: a lease is held by one
// token at a time; a fenced write lands only while its token holds the
// lease and ends it; Delete, Void, Clear of the namespace and the ttl
// void a lease; Release ends it, for its own token only. Then memo over
// it with [memo.Lease]: two instances (as two processes) compute a cold
// key once, and a Forget while one of them computes voids its write.
// [Run] calls it as the subtest "Lease" when the backend is a Leaser.
func RunLeaser(t *testing.T, f Factory, o Options) {
	o = o.withDefaults()
	ctx := context.Background()
	b := f(t)
	l, ok := b.(memo.Leaser)
	if !ok {
		t.Fatalf("%T does not implement memo.Leaser", b)
	}
	ns := ns(t, "lease")
	key := ns + ":k"
	acquire := func(want bool) string {
		t.Helper()
		tok, got, err := l.Acquire(ctx, key, time.Minute)
		if err != nil || got != want || (got && tok == "") {
			t.Fatalf("Acquire(%q) = %q, %v, %v; want held=%v", key, tok, got, err, want)
		}
		return tok
	}
	fenced := func(tok string, v string, want bool) {
		t.Helper()
		stored, err := l.SetFenced(ctx, key, []byte(v), time.Minute, tok)
		if err != nil || stored != want {
			t.Fatalf("SetFenced(%q, %q) = %v, %v; want %v", key, v, stored, err, want)
		}
	}

	t.Run("OneHolder", func(t *testing.T) {
		tok := acquire(true)
		acquire(false)
		fenced(tok, "v1", true)
		wantValue(t, b, key, []byte("v1"))
		acquire(true) // the write ended the lease
		tok2 := acquire(false)
		_ = tok2
		b.Delete(ctx, key)
	})
	t.Run("DeleteVoids", func(t *testing.T) {
		tok := acquire(true)
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		fenced(tok, "stale", false)
		wantMiss(t, b, key)
	})
	t.Run("VoidVoids", func(t *testing.T) {
		tok := acquire(true)
		if err := l.Void(ctx, key); err != nil {
			t.Fatal(err)
		}
		fenced(tok, "stale", false)
		wantMiss(t, b, key)
		acquire(true)
		b.Delete(ctx, key)
	})
	t.Run("Release", func(t *testing.T) {
		tok := acquire(true)
		if err := l.Release(ctx, key, "not-the-token"); err != nil {
			t.Fatal(err)
		}
		acquire(false) // another token's release leaves it held
		if err := l.Release(ctx, key, tok); err != nil {
			t.Fatal(err)
		}
		tok2 := acquire(true)
		fenced(tok, "old token", false)
		fenced(tok2, "v2", true)
		b.Delete(ctx, key)
	})
	t.Run("ClearVoids", func(t *testing.T) {
		c, ok := b.(memo.Clearer)
		if !ok {
			t.Skip("not a Clearer")
		}
		tok := acquire(true)
		if err := c.Clear(ctx, ns); err != nil {
			t.Fatal(err)
		}
		fenced(tok, "stale", false)
		wantMiss(t, b, key)
	})
	t.Run("Expires", func(t *testing.T) {
		k := ns + ":exp"
		if _, got, err := l.Acquire(ctx, k, 1100*time.Millisecond); !got || err != nil {
			t.Fatalf("Acquire = %v, %v", got, err)
		}
		o.sleep(1100*time.Millisecond + o.ExpirySlack)
		if _, got, err := l.Acquire(ctx, k, time.Minute); !got || err != nil {
			t.Fatalf("Acquire after the ttl = %v, %v; want the lease", got, err)
		}
		l.Void(ctx, k)
	})
	t.Run("FleetComputesOnce", func(t *testing.T) {
		// Two instances, as two processes: their flights do not see each
		// other, the lease does.
		var runs atomic.Int64
		fn := func(ctx context.Context, id int) (int, error) {
			runs.Add(1)
			time.Sleep(100 * time.Millisecond) // fn's own work, not a wait for the test
			return id, nil
		}
		fns := ns + "fleet"
		a := memo.New(fn, memo.Namespace(fns), memo.WithBackend(f(t)), memo.Lease(5*time.Second), memo.Timeout(2*time.Second))
		c := memo.New(fn, memo.Namespace(fns), memo.WithBackend(f(t)), memo.Lease(5*time.Second), memo.Timeout(2*time.Second))
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				inst := a
				if i%2 == 1 {
					inst = c
				}
				if v, err := inst.Call(ctx, 7); v != 7 || err != nil {
					t.Errorf("Call(7) = %d, %v", v, err)
				}
			})
		}
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Errorf("fn ran %d times for 16 callers on two instances, want 1", n)
		}
	})
	t.Run("ForgetVoidsWriteElsewhere", func(t *testing.T) {
		var n atomic.Int64
		held, release := make(chan struct{}), make(chan struct{})
		fn := func(ctx context.Context, id int) (int64, error) {
			v := n.Add(1)
			if v == 1 {
				close(held)
				<-release
			}
			return v, nil
		}
		fns := ns + "staleset"
		a := memo.New(fn, memo.Namespace(fns), memo.WithBackend(f(t)), memo.Lease(5*time.Second))
		c := memo.New(fn, memo.Namespace(fns), memo.WithBackend(f(t)), memo.Lease(5*time.Second))
		done := make(chan int64)
		go func() { v, _ := c.Call(ctx, 1); done <- v }()
		<-held
		if err := a.Forget(ctx, 1); err != nil { // the source changed: what c computes is old
			t.Fatal(err)
		}
		close(release)
		if v := <-done; v != 1 {
			t.Fatalf("c.Call = %d, want its own answer 1", v)
		}
		if v, _ := a.Call(ctx, 1); v != 2 {
			t.Errorf("a.Call after Forget = %d, want 2: the answer computed before Forget landed after it", v)
		}
	})
}
