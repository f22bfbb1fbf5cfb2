package memcachebackend_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/internal/fakememcached"
	"github.com/gomemo/memo/internal/testenv"
)

// TestLeaseKeys: the lease key of (namespace, generation, id) is a legal
// Memcached key, distinct from every value key and counter key, and from
// the lease keys of other triples, long ones hashed; the ids include the
// lease key's separator and the value key's.
func TestLeaseKeys(t *testing.T) {
	long := func(c byte, n int) string { return string(bytes.Repeat([]byte{c}, n)) }
	type triple struct {
		ns  string
		gen uint64
		id  string
	}
	var cases []triple
	for _, ns := range []string{"", "a", "a:g1", "a:g1~b", "a.b", "a~b", long('n', 200), long('n', 201)} {
		for _, gen := range []uint64{0, 1, 11, math.MaxUint64} {
			for _, id := range []string{"", "b", "b.c", "b~c", "~b", ".b", "g1~b", long('i', 46), long('i', 47), long('i', 99)} {
				cases = append(cases, triple{ns, gen, id})
			}
		}
	}
	type use struct {
		triple
		lease bool
	}
	seen := map[string]use{}
	add := func(k string, u use) {
		t.Helper()
		if len(k) > 250 || strings.ContainsAny(k, " \t\r\n\x00\x7f") {
			t.Errorf("%+v: %q is not a legal key", u, k)
		}
		if prev, dup := seen[k]; dup {
			t.Errorf("%+v and %+v share the key %q", prev, u, k)
		}
		seen[k] = u
	}
	for _, c := range cases {
		k, err := memcachebackend.KeyFor(c.ns, c.gen, c.id)
		if err != nil {
			t.Fatal(err)
		}
		add(k, use{c, false})
		lk, err := memcachebackend.LeaseKeyFor(c.ns, c.gen, c.id)
		if err != nil {
			t.Fatal(err)
		}
		add(lk, use{c, true})
	}
	for _, c := range cases {
		if u, ok := seen[memcachebackend.GenKey(c.ns)]; ok {
			t.Errorf("the counter key of %q is also the key of %+v", c.ns, u)
		}
	}
	if lk, _ := memcachebackend.LeaseKeyFor("ns", 35, "id"); lk != "ns:gz~id" {
		t.Errorf("lease key = %q, want %q", lk, "ns:gz~id")
	}
}

// leaseSetup is a Backend over addr for a lease test, with a second one
// standing for another process, and the raw client.
type leaseSetup struct {
	t     *testing.T
	c     *memcache.Client
	b, b2 *memcachebackend.Backend
	key   string
}

func newLeaseSetup(t *testing.T, addr string, opts ...memcachebackend.Option) *leaseSetup {
	c := newClient(t, addr)
	return &leaseSetup{
		t: t, c: c,
		b:   memcachebackend.New(c, opts...),
		b2:  memcachebackend.New(newClient(t, addr), opts...),
		key: testenv.NS(t, "lease") + ":k",
	}
}

func (s *leaseSetup) acquire(b *memcachebackend.Backend, ttl time.Duration, want bool) string {
	s.t.Helper()
	tok, ok, err := b.Acquire(context.Background(), s.key, ttl)
	if err != nil || ok != want {
		s.t.Fatalf("Acquire = %v, %v; want held=%v", ok, err, want)
	}
	return tok
}

// fenced runs b's SetFenced of v with hook called at stage.
func (s *leaseSetup) fenced(stage string, hook func(), tok, v string) (bool, error) {
	memcachebackend.SetFenceHook(s.b, func(st string) {
		if st == stage {
			hook()
		}
	})
	defer memcachebackend.SetFenceHook(s.b, nil)
	return s.b.SetFenced(context.Background(), s.key, []byte(v), time.Minute, tok)
}

func (s *leaseSetup) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// TestLeaseWindow documents, step by step, what a fenced write on
// Memcached guarantees and what it does not (see SetFenced): an
// invalidation from another process (another Backend) lands at each point
// of the holder's SetFenced, between its reads, its check and its write.
func TestLeaseWindow(t *testing.T) {
	ctx := context.Background()
	eachTarget(t, func(t *testing.T, addr string) {
		// Guaranteed: a Forget or a Set at any point is never overwritten
		// by the answer computed before it.
		t.Run("ForgetBetweenReads", func(t *testing.T) {
			s := newLeaseSetup(t, addr)
			tok := s.acquire(s.b, time.Minute, true)
			stored, err := s.fenced("read", func() { s.must(s.b2.Delete(ctx, s.key)) }, tok, "stale")
			if stored || err != nil {
				t.Errorf("SetFenced = %v, %v; want not stored (the lease check sees the Forget)", stored, err)
			}
			testenv.WantGet(t, s.b2, s.key, "")
		})
		for _, warm := range []bool{false, true} {
			name := "ForgetAfterCheck/cold"
			if warm {
				name = "ForgetAfterCheck/refresh"
			}
			t.Run(name, func(t *testing.T) {
				s := newLeaseSetup(t, addr)
				if warm {
					s.must(s.b.Set(ctx, s.key, []byte("old"), time.Minute))
				}
				tok := s.acquire(s.b, time.Minute, true)
				stored, err := s.fenced("checked", func() { s.must(s.b2.Delete(ctx, s.key)) }, tok, "stale")
				if stored || err != nil {
					t.Errorf("SetFenced = %v, %v; want not stored (the write is conditional on the value's key)", stored, err)
				}
				testenv.WantGet(t, s.b2, s.key, "")
				testenv.WantGet(t, s.b, s.key, "")
				s.acquire(s.b2, time.Minute, true) // the lease is over
			})
		}
		t.Run("SetAfterCheck", func(t *testing.T) {
			s := newLeaseSetup(t, addr)
			tok := s.acquire(s.b, time.Minute, true)
			stored, err := s.fenced("checked", func() {
				s.must(s.b2.Void(ctx, s.key)) // memo's Set: Void, then the write
				s.must(s.b2.Set(ctx, s.key, []byte("set"), time.Minute))
			}, tok, "stale")
			if stored || err != nil {
				t.Errorf("SetFenced = %v, %v; want not stored", stored, err)
			}
			testenv.WantGet(t, s.b, s.key, "set")
		})
		t.Run("ForgetAfterWrite", func(t *testing.T) {
			s := newLeaseSetup(t, addr)
			tok := s.acquire(s.b, time.Minute, true)
			stored, err := s.fenced("written", func() { s.must(s.b2.Delete(ctx, s.key)) }, tok, "v")
			if !stored || err != nil {
				t.Errorf("SetFenced = %v, %v; want stored (it wrote before the Forget)", stored, err)
			}
			testenv.WantGet(t, s.b2, s.key, "") // and the Forget removed it
		})
		t.Run("LeaseTakenOverBeforeEnd", func(t *testing.T) {
			// Step 4 ends the lease only if it is still the one step 2
			// read: a lease another process holds now is left alone.
			s := newLeaseSetup(t, addr)
			tok := s.acquire(s.b, time.Minute, true)
			var tok2 string
			stored, err := s.fenced("written", func() {
				s.must(s.b2.Void(ctx, s.key)) // as if it had expired
				tok2 = s.acquire(s.b2, time.Minute, true)
			}, tok, "v")
			if !stored || err != nil {
				t.Errorf("SetFenced = %v, %v; want stored", stored, err)
			}
			s.acquire(s.b, time.Minute, false)
			lk, err := memcachebackend.LeaseKey(ctx, s.b, s.key)
			s.must(err)
			if it, err := s.c.Get(lk); err != nil || string(it.Value) != tok2 {
				t.Errorf("lease after the write = %v, %v; want the other token, untouched", it, err)
			}
		})
		t.Run("Budget", func(t *testing.T) {
			// A write that cannot be sent soon enough after step 1 is not
			// sent: a tombstone would not be there for sure any more.
			s := newLeaseSetup(t, addr)
			memcachebackend.SetFenceBudget(s.b, 50*time.Millisecond)
			tok := s.acquire(s.b, time.Minute, true)
			stored, err := s.fenced("checked", func() { time.Sleep(100 * time.Millisecond) }, tok, "late")
			if stored || err == nil {
				t.Errorf("SetFenced past its budget = %v, %v; want not stored, an error", stored, err)
			}
			testenv.WantGet(t, s.b, s.key, "")
			s.acquire(s.b2, time.Minute, true) // the lease was ended
		})

		// Not guaranteed (documented): a Void with no write after it, once
		// the holder has checked its lease.
		t.Run("VoidAloneAfterCheck", func(t *testing.T) {
			s := newLeaseSetup(t, addr)
			tok := s.acquire(s.b, time.Minute, true)
			stored, err := s.fenced("checked", func() { s.must(s.b2.Void(ctx, s.key)) }, tok, "lands")
			if !stored || err != nil {
				t.Errorf("SetFenced = %v, %v; the documented gap: a lone Void after the check does not stop the write", stored, err)
			}
			testenv.WantGet(t, s.b2, s.key, "lands")
		})
		// Not guaranteed: a Clear through another Backend, until this one
		// refreshes its generation; with GenerationRefresh(0), at once.
		t.Run("ClearElsewhere", func(t *testing.T) {
			s := newLeaseSetup(t, addr, memcachebackend.GenerationRefresh(time.Minute))
			tok := s.acquire(s.b, time.Minute, true)
			s.must(s.b2.Clear(ctx, strings.TrimSuffix(s.key, ":k")))
			stored, err := s.b.SetFenced(ctx, s.key, []byte("old generation"), time.Minute, tok)
			if !stored || err != nil {
				t.Errorf("SetFenced = %v, %v; want stored under the old generation", stored, err)
			}
			testenv.WantGet(t, s.b2, s.key, "") // invisible to a Backend that has seen the Clear

			s = newLeaseSetup(t, addr, memcachebackend.GenerationRefresh(0))
			tok = s.acquire(s.b, time.Minute, true)
			s.must(s.b2.Clear(ctx, strings.TrimSuffix(s.key, ":k")))
			if stored, err := s.b.SetFenced(ctx, s.key, []byte("stale"), time.Minute, tok); stored || err != nil {
				t.Errorf("SetFenced with GenerationRefresh(0) = %v, %v; want not stored", stored, err)
			}
		})
	})

	// Not guaranteed: a Forget whose tombstone is gone (evicted, or
	// expired under a writer stalled past its budget) before a cold key's
	// write. The fake stands in for the eviction.
	t.Run("TombstoneEvicted", func(t *testing.T) {
		s := newLeaseSetup(t, fakememcached.Start(t).Addr())
		tok := s.acquire(s.b, time.Minute, true)
		stored, err := s.fenced("checked", func() {
			s.must(s.b2.Delete(ctx, s.key))
			sk, err := memcachebackend.StoredKey(ctx, s.b2, s.key)
			s.must(err)
			s.must(s.c.Delete(sk)) // the eviction
		}, tok, "lands")
		if !stored || err != nil {
			t.Errorf("SetFenced = %v, %v; the documented gap: without its tombstone, the Forget is not seen", stored, err)
		}
		testenv.WantGet(t, s.b2, s.key, "lands")
	})
}

// TestDeleteTombstone: Delete leaves a tombstone only where it found a
// lease; Get reads it as a miss; a write replaces it; it expires.
func TestDeleteTombstone(t *testing.T) {
	ctx := context.Background()
	eachTarget(t, func(t *testing.T, addr string) {
		s := newLeaseSetup(t, addr)
		sk, err := memcachebackend.StoredKey(ctx, s.b, s.key)
		s.must(err)
		s.must(s.b.Set(ctx, s.key, []byte("v"), time.Minute))
		s.must(s.b.Delete(ctx, s.key))
		if it, err := s.c.Get(sk); !errors.Is(err, memcache.ErrCacheMiss) {
			t.Errorf("raw Get after a Delete without a lease = %v, %v; want nothing left", it, err)
		}

		s.must(s.b.Set(ctx, s.key, []byte("v"), time.Minute))
		s.acquire(s.b, time.Minute, true)
		s.must(s.b.Delete(ctx, s.key))
		it, err := s.c.Get(sk)
		if err != nil || it.Flags != memcachebackend.TombstoneFlags || len(it.Value) != 0 {
			t.Fatalf("raw Get after a Delete under a lease = %+v, %v; want an empty item with flags %#x", it, err, memcachebackend.TombstoneFlags)
		}
		testenv.WantGet(t, s.b, s.key, "")
		s.acquire(s.b2, time.Minute, true) // Delete ended the lease
		s.must(s.b.Set(ctx, s.key, []byte("new"), time.Minute))
		testenv.WantGet(t, s.b, s.key, "new")
	})
	t.Run("expires", func(t *testing.T) {
		srv := fakememcached.Start(t)
		var skew time.Duration
		srv.SetClock(func() time.Time { return time.Now().Add(skew) })
		s := newLeaseSetup(t, srv.Addr())
		sk, err := memcachebackend.StoredKey(ctx, s.b, s.key)
		s.must(err)
		s.acquire(s.b, time.Minute, true)
		s.must(s.b.Delete(ctx, s.key))
		if _, err := s.c.Get(sk); err != nil {
			t.Fatalf("no tombstone: %v", err)
		}
		skew = 9 * time.Second
		if _, err := s.c.Get(sk); err != nil {
			t.Errorf("tombstone gone after 9 s: %v", err)
		}
		skew = 10 * time.Second
		if _, err := s.c.Get(sk); !errors.Is(err, memcache.ErrCacheMiss) {
			t.Errorf("tombstone still there after 10 s: %v", err)
		}
	})
}

// TestLeaseLivesItsTTL: a lease lives at least its ttl whatever the phase
// of the server's second-resolution clock (ttl rounded up, plus a second),
// and not much more.
func TestLeaseLivesItsTTL(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		s := newLeaseSetup(t, addr)
		start := time.Now()
		s.acquire(s.b, time.Second, true)
		time.Sleep(950*time.Millisecond - time.Since(start))
		s.acquire(s.b2, time.Second, false)
		time.Sleep(3*time.Second - time.Since(start))
		s.acquire(s.b2, time.Second, true)
	})
}

// TestFencedTooLarge: a value over the item limit is refused before any
// request for the write, with memo.ErrTooLarge, and ends the lease.
func TestFencedTooLarge(t *testing.T) {
	eachTarget(t, func(t *testing.T, addr string) {
		s := newLeaseSetup(t, addr)
		tok := s.acquire(s.b, time.Minute, true)
		stored, err := s.b.SetFenced(context.Background(), s.key, make([]byte, 2<<20), time.Minute, tok)
		if stored || !errors.Is(err, memo.ErrTooLarge) {
			t.Errorf("SetFenced of 2 MiB = %v, %v; want memo.ErrTooLarge", stored, err)
		}
		s.acquire(s.b2, time.Minute, true)
	})
}

// TestLeaseInvalidationRace: a holder's fenced write of an answer races
// with a Forget, or a Set (Void, then the write), from another Backend,
// started at a random point of it: from the moment the invalidation
// returns, no read returns the holder's answer, in 300 rounds of each
// per target.
func TestLeaseInvalidationRace(t *testing.T) {
	ctx := context.Background()
	eachTarget(t, func(t *testing.T, addr string) {
		for _, op := range []string{"Forget", "Set"} {
			t.Run(op, func(t *testing.T) {
				s := newLeaseSetup(t, addr)
				stale, landed := 0, 0
				for i := range 300 {
					s.key = testenv.NS(t, "race") + ":" + strconv.Itoa(i)
					if i%2 == 1 {
						s.must(s.b.Set(ctx, s.key, []byte("old"), time.Minute)) // a refresh
					}
					tok := s.acquire(s.b, time.Minute, true)
					done := make(chan bool)
					go func() {
						stored, err := s.b.SetFenced(ctx, s.key, []byte("computed before"), time.Minute, tok)
						if err != nil {
							t.Error(err)
						}
						done <- stored
					}()
					time.Sleep(time.Duration(rand.N(150)) * time.Microsecond)
					if op == "Forget" {
						s.must(s.b2.Delete(ctx, s.key))
					} else {
						s.must(s.b2.Void(ctx, s.key))
						s.must(s.b2.Set(ctx, s.key, []byte("set"), time.Minute))
					}
					check := func() {
						v, ok, err := s.b2.Get(ctx, s.key)
						s.must(err)
						if ok && string(v) == "computed before" {
							stale++
						}
					}
				wait:
					for {
						check()
						select {
						case stored := <-done:
							if stored {
								landed++
							}
							break wait
						default:
						}
					}
					check()
				}
				if stale > 0 {
					t.Errorf("%d reads after the %s returned got the answer computed before it", stale, op)
				}
				t.Logf("%s: %d of 300 fenced writes landed before the invalidation", op, landed)
			})
		}
	})
}
