package reliability_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
)

// TestPanickingFn: 32 callers of one key, half of them cancellable (fn runs
// on a flight goroutine) and half not (the first such caller runs fn
// inline), while fn panics. Every caller must panic with a
// *memo.PanicError, promptly; the panic is not cached (the next call runs
// fn again and gets its value); no goroutine is left behind.
func TestPanickingFn(t *testing.T) {
	for _, cancellable := range []bool{true, false} {
		name := map[bool]string{true: "flight goroutine", false: "inline"}[cancellable]
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			var panicking atomic.Bool
			panicking.Store(true)
			var runs atomic.Int64
			f := memo.New(func(ctx context.Context, a int) (Answer, error) {
				runs.Add(1)
				time.Sleep(30 * time.Millisecond) // let the others join
				if panicking.Load() {
					panic("boom")
				}
				return answer(a), nil
			}, memo.Namespace(namespace("panic")), memo.WithBackend(memory.New()))
			const callers = 32
			var (
				wg         sync.WaitGroup
				panicErrs  atomic.Int64
				otherPanic atomic.Int64
				returned   atomic.Int64
			)
			start := make(chan struct{})
			for range callers {
				wg.Go(func() {
					defer func() {
						r := recover()
						var pe *memo.PanicError
						if err, ok := r.(error); ok && errors.As(err, &pe) && pe.Value == "boom" {
							panicErrs.Add(1)
						} else if r != nil {
							otherPanic.Add(1)
						}
					}()
					<-start
					ctx := context.Background()
					if cancellable {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
					}
					f.Call(ctx, 1)
					returned.Add(1)
				})
			}
			close(start)
			waitStart := time.Now()
			if !waitDone(t, &wg, 10*time.Second, "callers of a panicking fn") {
				return
			}
			took := time.Since(waitStart)
			panicking.Store(false)
			runsBefore := runs.Load()
			v, err := callNoPanic(t, f, 1)
			figures(t, "callers", callers, "panic_errors", panicErrs.Load(), "other_panics", otherPanic.Load(),
				"returned_normally", returned.Load(), "fn_runs", runsBefore, "all_done_in", took,
				"after_recovery_ok", err == nil && sameAnswer(v, answer(1)))
			if panicErrs.Load() != callers {
				t.Errorf("%d of %d callers panicked with a *memo.PanicError (%d other panics, %d returned)",
					panicErrs.Load(), callers, otherPanic.Load(), returned.Load())
			}
			if err != nil || !sameAnswer(v, answer(1)) || runs.Load() != runsBefore+1 {
				t.Errorf("the call after the panic = %+v, %v (fn ran %d times); want fn run again and its value",
					v, err, runs.Load()-runsBefore)
			}
		})
	}
}

func TestCallersCancelAtRandom(t *testing.T) {
	for _, tg := range []struct {
		name string
		open func(t *testing.T) (memo.Backend, func())
	}{
		{"memory", func(t *testing.T) (memo.Backend, func()) { return memory.New(), func() {} }},
		{"redis", func(t *testing.T) (memo.Backend, func()) {
			c := redis.NewClient(redisOptions(env(t, "MEMO_REDIS_ADDR")))
			pingRedis(t, c)
			return redisbackend.New(c), func() { c.Close() }
		}},
	} {
		t.Run(tg.name, func(t *testing.T) {
			leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, clientLeakOpts...)
			b, closeClient := tg.open(t)
			runCancelAtRandom(t, b)
			closeClient()
			goleak.VerifyNone(t, leakOpts...)
		})
	}
}

func runCancelAtRandom(t *testing.T, b memo.Backend) {
	const (
		keys    = 400
		callers = 8
		batch   = 50 // keys in flight at once
	)
	var (
		runs, fnCancelled                atomic.Int64
		stayed, stayedOK, left, leftOK   atomic.Int64
		servedAnyway, bad, inlineCallers atomic.Int64
	)
	f := memo.New(func(ctx context.Context, a int) (Answer, error) {
		runs.Add(1)
		d := time.Duration(10+a%21) * time.Millisecond
		select {
		case <-time.After(d):
			return answer(a), nil
		case <-ctx.Done():
			fnCancelled.Add(1)
			return Answer{}, ctx.Err()
		}
	}, memo.Namespace(namespace("cancel")), memo.WithBackend(b), memo.Timeout(5*time.Second),
		memo.OnError(func(context.Context, error) {}))
	r := rand.New(rand.NewPCG(3, 4))
	var mu sync.Mutex // guards r
	start := time.Now()
	for first := 0; first < keys; first += batch {
		var wg sync.WaitGroup
		for k := first; k < first+batch; k++ {
			for range callers {
				mu.Lock()
				mode := r.IntN(10) // 0-4: cancels, 5-8: stays, 9: cannot be cancelled
				after := time.Duration(r.Int64N(int64(40 * time.Millisecond)))
				mu.Unlock()
				wg.Go(func() {
					ctx := context.Background()
					if mode < 9 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
						if mode < 5 {
							time.AfterFunc(after, cancel)
						}
					} else {
						inlineCallers.Add(1)
					}
					v, err := f.Call(ctx, k)
					ok := err == nil && sameAnswer(v, answer(k))
					switch {
					case mode >= 5:
						stayed.Add(1)
						if ok {
							stayedOK.Add(1)
						}
					case errors.Is(err, context.Canceled):
						left.Add(1)
						leftOK.Add(1)
					case ok: // the value came before the cancellation
						left.Add(1)
						servedAnyway.Add(1)
					default:
						left.Add(1)
					}
					if err != nil && !errors.Is(err, context.Canceled) || err == nil && !ok {
						bad.Add(1)
					}
				})
			}
		}
		if !waitDone(t, &wg, 20*time.Second, "a batch of callers") {
			return
		}
	}
	figures(t, "keys", keys, "callers", keys*callers, "stayed", stayed.Load(), "stayed_got_value", stayedOK.Load(),
		"cancelled", left.Load(), "cancelled_got_canceled", leftOK.Load(), "cancelled_but_served", servedAnyway.Load(),
		"uncancellable_callers", inlineCallers.Load(), "fn_runs", runs.Load(), "fn_cancelled", fnCancelled.Load(),
		"bad_results", bad.Load(), "took", time.Since(start))
	if stayed.Load() != stayedOK.Load() {
		t.Errorf("%d of %d callers that stayed did not get the value", stayed.Load()-stayedOK.Load(), stayed.Load())
	}
	if n := bad.Load(); n > 0 {
		t.Errorf("%d calls returned an error other than their own context.Canceled, or a wrong value", n)
	}
	if left.Load() != leftOK.Load()+servedAnyway.Load() {
		t.Errorf("callers that cancelled: %d, of which %d got context.Canceled and %d the value", left.Load(), leftOK.Load(), servedAnyway.Load())
	}
}
