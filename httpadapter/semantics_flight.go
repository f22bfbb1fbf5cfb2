package httpadapter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"

	"github.com/gomemo/memo"
)

// shared computes the answer for a without reading or writing the cache
// (memo.Bypass), sharing the computation with the concurrent requests of
// this handler that bypass the cache for the same key: those with
// no-store, or, when creds is true, those with the same Authorization and
// Cookie fields, so that one caller's computation never answers another
// caller who may be someone else. An argument memo cannot key is computed
// alone.
func (h *handler[A, R]) shared(ctx context.Context, r *http.Request, a A, creds bool) (*memo.Entry, error) {
	key := h.f.Key(a)
	if key == "" {
		return h.f.Lookup(ctx, a, memo.Bypass)
	}
	if creds {
		key += "\x00" + credentialsID(r.Header)
	} else {
		key += "\x01"
	}
	return h.flights.do(ctx, key, func(ctx context.Context) (*memo.Entry, error) {
		return h.f.Lookup(ctx, a, memo.Bypass)
	}, func(p any) {
		h.cfg.errorLog(r, fmt.Errorf("httpadapter: fn panicked with no request left to receive it: %v", p))
	})
}

// credentialsID is a hash of the request's Authorization and Cookie lines,
// so that the flight map holds no credential.
func credentialsID(hd http.Header) string {
	d := sha256.New()
	for _, k := range []string{"Authorization", "Cookie"} {
		for _, v := range hd[k] {
			d.Write([]byte(v))
			d.Write([]byte{0})
		}
		d.Write([]byte{1})
	}
	return string(d.Sum(nil))
}

// flightGroup runs at most one computation at a time per key, like memo's
// own flights: the computation runs on a goroutine of its own, on a
// context that keeps the first caller's values but not its cancellation,
// and each caller waits on its own context, leaving alone when it ends.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*bflight // guarded by mu
}

type bflight struct {
	done     chan struct{} // closed when e, err, panicked and pv are set
	e        *memo.Entry
	err      error
	panicked bool
	pv       any
	waiters  int // callers waiting or about to read the result; guarded by flightGroup.mu
}

// do returns the result of the flight for key, starting one with run when
// none is under way. A panic of run reaches every caller that waits for
// it, and orphan when none is left.
func (g *flightGroup) do(ctx context.Context, key string, run func(context.Context) (*memo.Entry, error), orphan func(any)) (*memo.Entry, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*bflight)
	}
	f := g.m[key]
	if f == nil {
		f = &bflight{done: make(chan struct{})}
		g.m[key] = f
		go func(ctx context.Context) {
			defer func() {
				if p := recover(); p != nil {
					f.panicked, f.pv = true, p
				}
				g.mu.Lock()
				delete(g.m, key)
				left := f.waiters
				close(f.done)
				g.mu.Unlock()
				if f.panicked && left == 0 {
					orphan(f.pv)
				}
			}()
			f.e, f.err = run(ctx)
		}(context.WithoutCancel(ctx))
	}
	f.waiters++
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.take()
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-f.done: // done before the caller could leave: it takes the result
		g.mu.Unlock()
		return f.take()
	default:
	}
	f.waiters--
	g.mu.Unlock()
	return nil, ctx.Err()
}

func (f *bflight) take() (*memo.Entry, error) {
	if f.panicked {
		panic(f.pv)
	}
	return f.e, f.err
}
