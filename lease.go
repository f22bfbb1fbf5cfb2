package memo

import (
	"context"
	"math/rand/v2"
	"time"
)

// Leaser is implemented by a [Backend] that can hand out leases, so that
// one process of a fleet computes a missing key while the others wait for
// its answer, and so that an answer computed before an invalidation never
// lands after it (see [Lease]). A lease on a key is voided by the
// backend's Delete of the key, by its Clear of the key's namespace (where
// the backend says so), by a [Leaser.Void], and by its ttl passing.
type Leaser interface {
	// Acquire takes the lease on key for ttl when no one holds it,
	// returning a token of its own; ok is false when another holds it.
	Acquire(ctx context.Context, key string, ttl time.Duration) (token string, ok bool, err error)
	// SetFenced stores value under key for ttl (0: no expiry) only while
	// token still holds the lease on key, and ends the lease. stored is
	// false when the lease was voided or had expired: nothing was stored.
	SetFenced(ctx context.Context, key string, value []byte, ttl time.Duration, token string) (stored bool, err error)
	// Release ends the lease token holds on key, if it still does,
	// without storing anything.
	Release(ctx context.Context, key, token string) error
	// Void ends any lease on key, so that its holder's SetFenced stores
	// nothing. memo calls it before [Func.Set] writes.
	Void(ctx context.Context, key string) error
}

// Lease makes the processes sharing a backend compute a missing key (or
// one due for a refresh) once for the whole fleet: before running fn, a
// process takes a lease on the key in the backend. Others then serve a
// stale entry where the freshness options allow, or wait for the answer:
// they read again after a short jittered pause until the answer appears,
// the lease ends (then they try to take it), [LeaseWait] passes (then
// they compute anyway: fail-open), or their context ends. The holder's
// write is fenced: it lands only while the lease is still its own, so
// that a Forget, Clear or Set in any process voids an answer computed
// before it. A holder that dies delays the others by at most ttl. ttl
// should exceed fn's usual run time; it must be positive. The backend
// must implement [Leaser] (redisbackend, memcachebackend and
// dynamobackend do; see each for what it guarantees); with one that does
// not, or without a backend, Lease does nothing: flights already cover one
// process.
func Lease(ttl time.Duration) Option {
	mustPositive("Lease", ttl)
	return Option{"Lease", func(c *config) { c.lease = ttl }}
}

// LeaseWait bounds how long a call waits for another process's lease
// (default: the lease's ttl) before it computes anyway. d must be
// positive.
func LeaseWait(d time.Duration) Option {
	mustPositive("LeaseWait", d)
	return Option{"LeaseWait", func(c *config) { c.leaseWait = d }}
}

// leaser returns the function's backend as a Leaser when leases are on.
func (s *state) leaser() Leaser {
	if s.lease <= 0 || s.remote == nil {
		return nil
	}
	l, _ := s.remote.(Leaser)
	return l
}

// leaseFor takes the lease on key before fn runs, or waits for another
// process's answer. It returns the token to fence the write with ("" to
// write unfenced: no lease, a backend fault, or LeaseWait passed), or the
// answer that appeared meanwhile (ok true).
func (f *Func[A, R]) leaseFor(ctx context.Context, s *state, l Leaser, key string, needVal bool, after int64, missing bool, seq uint64, fl *flight[result[R]]) (token string, res result[R], ok bool) {
	wait := s.leaseWait
	if wait <= 0 {
		wait = s.lease
	}
	deadline := time.Now().Add(wait)
	pause := 2 * time.Millisecond
	waited := false
	la, _ := l.(absentLeaser)
	for {
		var got, exists bool
		err := s.call(ctx, s.timeout, "lease", key, func(bctx context.Context) error {
			var err error
			if missing && la != nil {
				// The read found no entry: take the lease only if none
				// has been stored since, in the same step.
				token, got, exists, err = la.AcquireIfAbsent(bctx, key, s.lease)
			} else {
				token, got, err = l.Acquire(bctx, key, s.lease)
			}
			return err
		})
		if err == nil && exists {
			// An entry was stored since the read (or one this function
			// cannot use is there): read it; if it does not answer, take
			// the lease whatever the key holds.
			missing = false
			if r, hit, _, _ := f.readTiers(ctx, s, key, revalidate, needVal, s.timeout, after, seq, fl); hit {
				return "", r, true
			}
			continue
		}
		if err != nil {
			s.report(ctx, "lease", key, err)
			return "", res, false // fail open: compute unfenced
		}
		if got {
			if waited {
				// The holder this call waited for may have written and
				// ended its lease between the last read and this
				// Acquire: read once more before running fn again.
				if r, hit, _, _ := f.readTiers(ctx, s, key, revalidate, needVal, s.timeout, after, seq, fl); hit {
					s.release(ctx, key, token)
					s.stats.leaseWaits.Add(1)
					r.waited = true
					return "", r, true
				}
			}
			return token, res, false
		}
		waited = true
		if !time.Now().Before(deadline) {
			return "", res, false // waited long enough: compute anyway
		}
		// Another process computes: wait for its answer.
		d := pause/2 + rand.N(pause)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", res, false
		}
		pause = min(pause*2, 50*time.Millisecond)
		// Only an answer fresher than the one this call refreshes, if any.
		if r, hit, _, _ := f.readTiers(ctx, s, key, revalidate, needVal, s.timeout, after, seq, fl); hit {
			s.stats.leaseWaits.Add(1)
			r.waited = true
			return "", r, true
		}
	}
}

// absentLeaser is a Leaser that can take a lease only while the key holds
// no entry, in one step: a process whose read missed does not then take
// the lease a holder has just ended by storing the answer, and run fn
// again. redisbackend implements it.
type absentLeaser interface {
	AcquireIfAbsent(ctx context.Context, key string, ttl time.Duration) (token string, ok, exists bool, err error)
}

// release ends a lease that no write used, reporting a failure (the lease
// then ends at its ttl).
func (s *state) release(ctx context.Context, key, token string) {
	if err := s.call(ctx, s.timeout, "lease", key, func(bctx context.Context) error { return s.leaser().Release(bctx, key, token) }); err != nil {
		s.report(ctx, "lease", key, err)
	}
}
