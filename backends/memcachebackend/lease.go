package memcachebackend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo"
)

// Leases (memo.Lease): see SetFenced for the protocol and exactly what it
// guarantees.

var _ memo.Leaser = (*Backend)(nil)

const (
	// leaseSep replaces the '.' after the generation in a lease's key.
	leaseSep = "~"

	// tombstoneFlags marks the tombstone Delete leaves where a lease was;
	// memo's values are stored with flags 0.
	tombstoneFlags uint32 = 0x6d656d6f // "memo"

	// tombstoneTTL is how long a tombstone is kept (at least a second less
	// at the server's clock).
	tombstoneTTL = 10 * time.Second

	// fenceBudget is the most SetFenced lets pass between reading the value
	// (step 1) and sending its write (step 3): with a request taking at
	// most twice the client's Timeout, the write reaches the server while
	// a tombstone written after step 1 is still there.
	fenceBudget = 4 * time.Second
)

// fenceTest holds test hooks of SetFenced.
type fenceTest struct {
	hook   func(stage string) // called after steps 1 ("read"), 2 ("checked") and 3 ("written")
	budget time.Duration      // replaces fenceBudget when positive
}

// errFenceBudget is SetFenced's error when the write could not be sent
// within fenceBudget of reading the value.
var errFenceBudget = errors.New("the write could not be sent within the fence's budget: not stored")

// leaseKey returns the Memcached key of id's lease in the state's
// namespace and generation.
func (s *genState) leaseKey(id string) (string, error) {
	return storedKey(s.prefix[:len(s.prefix)-1]+leaseSep, id)
}

// leaseKeys returns the generation to use now for key and the keys of its
// value and of its lease.
func (b *Backend) leaseKeys(ctx context.Context, op, key string) (pk, lk string, err error) {
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return "", "", errNoNamespace(op, key)
	}
	st, err := b.current(ctx, ns)
	if err != nil {
		return "", "", fmt.Errorf("memcachebackend: %s %q: generation of %q: %w", op, key, ns, err)
	}
	if pk, err = st.key(id); err == nil {
		lk, err = st.leaseKey(id)
	}
	if err != nil {
		return "", "", fmt.Errorf("memcachebackend: %s %q: %w", op, key, err)
	}
	return pk, lk, nil
}

// one runs fn, a single request, on the caller's goroutine when the
// client's Timeout ends it before ctx would (see inline), else bounded by
// ctx.
func (b *Backend) one(ctx context.Context, fn func() error) error {
	if b.inline(ctx) {
		return fn()
	}
	_, err := handoff(ctx, ctx.Done(), func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// Acquire takes the lease on key for ttl with one "add" of the lease's key
// (see [Backend.SetFenced] for the protocol and what it guarantees): ok is
// false when another token holds it. The lease lives ttl rounded up to whole seconds plus
// one second. An Acquire abandoned when ctx ends may still take the lease,
// which then ends at its ttl. Errors: ctx ended (wrapping ctx.Err()), a
// ttl that is not positive, an invalid key, network failures and the
// client's timeouts.
func (b *Backend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	if ttl <= 0 {
		return "", false, fmt.Errorf("memcachebackend: lease %q: ttl %v must be positive", key, ttl)
	}
	_, lk, err := b.leaseKeys(ctx, "lease", key)
	if err != nil {
		return "", false, err
	}
	token := newToken()
	it := &memcache.Item{Key: lk, Value: []byte(token), Expiration: expiration(ttl+time.Second, time.Now())}
	err = b.one(ctx, func() error { return b.client.Add(it) })
	if errors.Is(err, memcache.ErrNotStored) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	return token, true, nil
}

// SetFenced stores value under key for ttl (0: no expiry) only while token
// holds key's lease and the value's key has not changed since SetFenced
// read it, and ends the lease. stored is false, with a nil error, when the
// lease was voided or had ended, or the value's key changed meanwhile. The
// ttl is rounded up as by [Backend.Set]; a value too large is refused as
// by Set, and the lease is then ended. Errors: ctx ended (wrapping
// ctx.Err()), a negative ttl, an invalid key, network failures and the
// client's timeouts, a write that could not be sent within 4 seconds of
// reading the value (stored false). SetFenced returns when ctx ends,
// whatever the server does; its steps then run on to their end, and the
// write may still land. It does not retain value.
//
// # Keys
//
// The lease on a key is a Memcached item of its own, under the same
// namespace generation as the value: memo's key "<ns>:<id>" has its value
// under "<ns>:g<gen>.<id>" and its lease under "<ns>:g<gen>~<id>" (hashed
// as values are when longer than 250 bytes). After the last ':' a value's
// key has '.' right after the generation's digits where a lease's key has
// '~', and counters and hashed keys hold no ':', so no two of them
// collide. A Clear, which moves the namespace to a new generation, moves
// its leases too: a lease taken before it is not found after it.
//
// # Protocol
//
// [Backend.Acquire] is one "add" of the lease's key, holding a random
// token. SetFenced makes four round trips, in this order:
//
//  1. it reads the value's key (its CAS id, or that it is missing);
//  2. it reads the lease and compares it with the token: another token,
//     or none, stores nothing;
//  3. it writes the value with "cas" on the CAS id read in step 1, or with
//     "add" when the key was missing then, so that the write lands only
//     if the value's key has not changed since step 1;
//  4. it ends the lease with a "cas" to an already expired item, which
//     takes effect only if the lease is still the one step 2 read.
//
// [Backend.Delete] (memo's Forget), in turn, deletes the lease first and
// then, when there was a lease, replaces the value with a tombstone (an
// empty item with flags 0x6d656d6f, kept 10 seconds, which Get reads as a
// miss) instead of deleting it. memo's Set calls [Backend.Void], which
// deletes the lease, and then writes the value.
//
// # What it guarantees
//
// Memcached cannot check one key and write another atomically, but the
// fence holds against Delete and Set all the same: the write of step 3 is
// conditional on the value's key itself, and an invalidation changes that
// key after it deletes the lease, while the writer reads the two in the
// other order (the value, then the lease). So an invalidation whose lease
// deletion comes before step 2 is seen in step 2; one whose lease deletion
// comes after step 2 changes the value's key after step 1, which fails
// step 3 if it comes first, and replaces what step 3 wrote if it comes
// after. Either way, an answer computed before a Forget or a Set in any
// process is not served after it, as on Redis, with these exceptions,
// where Memcached gives less than Redis and DynamoDB:
//
//   - A Void on its own (no write after it), as a direct caller of the
//     Leaser interface may make, is seen only before step 2: one that
//     lands between steps 2 and 3 does not stop the write (nor does a
//     Delete right after such a Void, which then finds no lease and leaves
//     no tombstone). memo's Set always writes after its Void, and that
//     write is fenced as above.
//   - A cold key's write (step 3 an "add") is stopped by a Delete that
//     came after step 1 only while the Delete's tombstone is there: it is
//     kept 10 seconds (at least 9, Memcached's clock ticking once a
//     second), and SetFenced does not write (stored false, with an error)
//     once 4 seconds have passed since step 1. The write thus lands while
//     the tombstone is there as long as one request takes under 5 seconds
//     (a client Timeout under 2.5 s: a dial and the request) and the
//     process is not frozen in between, and as long as Memcached does not
//     evict the tombstone within seconds of writing it (a memory pressure
//     that evicts items seconds after they are written).
//   - A lease that ends by its ttl between its holder's steps 2 and 3 (the
//     holder overran the ttl) is not found by a Delete that comes then,
//     which therefore leaves no tombstone: a cold key's write may land
//     after that Delete. Keep the ttl well above fn's run time.
//   - A Clear in another process (or through another Backend) is seen by
//     this Backend when its cached generation is next refreshed
//     ([GenerationRefresh]; at once with GenerationRefresh(0)). Until then
//     a fenced write lands under the old generation, where only the
//     processes that have not refreshed yet read it, as any Set's does
//     (see [Backend.Clear]).
//
// # Expiry and costs
//
// A lease lives its ttl rounded up to whole seconds, plus one second: at
// least its ttl whatever the phase of Memcached's clock, and at most about
// two seconds more, which is also the most that a holder that dies delays
// the others (memo's waiters compute anyway once LeaseWait has passed).
// Acquire costs one round trip (a waiter's retry too), SetFenced four
// where Set costs one, Release two, Void one, and Delete one more than it
// would without leases. Step 1 reads the value's current bytes: a
// refresh reads the old value once more, for its CAS id (the text
// protocol cannot read a CAS id alone).
func (b *Backend) SetFenced(ctx context.Context, key string, value []byte, ttl time.Duration, token string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	if ttl < 0 {
		return false, fmt.Errorf("memcachebackend: set %q: negative ttl %v", key, ttl)
	}
	pk, lk, err := b.leaseKeys(ctx, "set", key)
	if err != nil {
		return false, err
	}
	if size := min(len(key)+genOverhead, maxKeyLen) + len(value) + itemOverhead; size > b.maxItem {
		// Nothing can be stored: let the others compute now rather than
		// wait for the ttl.
		_, _ = bounded(ctx, func() (struct{}, error) { return struct{}{}, b.release(lk, token) })
		return false, fmt.Errorf("memcachebackend: set %q: %d-byte value makes a %d-byte item, over the %d-byte limit: %w",
			key, len(value), size, b.maxItem, memo.ErrTooLarge)
	}
	if ctx.Done() != nil {
		value = bytes.Clone(value) // the steps may outlive this call
	}
	exp := expiration(ttl, time.Now())
	stored, err := bounded(ctx, func() (bool, error) { return b.setFenced(pk, lk, value, exp, token) })
	if err != nil {
		if isTooLarge(err) {
			return false, fmt.Errorf("memcachebackend: set %q: %d-byte value: %w (%w)", key, len(value), memo.ErrTooLarge, err)
		}
		return stored, fmt.Errorf("memcachebackend: set %q: %w", key, err)
	}
	return stored, nil
}

// setFenced runs SetFenced's four steps.
func (b *Backend) setFenced(pk, lk string, value []byte, exp int32, token string) (bool, error) {
	// 1. The value's key, before the lease.
	start := time.Now()
	cur, err := b.client.Get(pk)
	if errors.Is(err, memcache.ErrCacheMiss) {
		cur, err = nil, nil
	}
	if err != nil {
		return false, err
	}
	b.fence.at("read")
	// 2. The lease.
	l, err := b.client.Get(lk)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if string(l.Value) != token {
		return false, nil
	}
	b.fence.at("checked")
	// 3. The write, if the value's key is as step 1 read it.
	budget := fenceBudget
	if b.fence.budget > 0 {
		budget = b.fence.budget
	}
	item := &memcache.Item{Key: pk, Value: value, Expiration: exp}
	switch {
	case time.Since(start) > budget:
		err = errFenceBudget
	case cur == nil:
		err = b.client.Add(item)
	default:
		item.CasID = cur.CasID
		err = b.client.CompareAndSwap(item)
	}
	stored := err == nil
	if errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrCacheMiss) {
		err = nil // changed (or evicted) since step 1
	}
	b.fence.at("written")
	// 4. End the lease if it is still the one step 2 read. A failure is
	// not reported once the value is stored: the lease then ends at its
	// ttl, and waiters find the value meanwhile.
	if lerr := b.endLease(l); lerr != nil && err == nil && !stored {
		err = lerr
	}
	return stored, err
}

// endLease replaces the lease l (as read, with its CAS id) with an already
// expired item, unless it changed since it was read.
func (b *Backend) endLease(l *memcache.Item) error {
	end := &memcache.Item{Key: l.Key, Expiration: -1, CasID: l.CasID}
	err := b.client.CompareAndSwap(end)
	if err == nil || errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// release ends the lease under lk if token holds it.
func (b *Backend) release(lk, token string) error {
	l, err := b.client.Get(lk)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(l.Value) != token {
		return nil
	}
	return b.endLease(l)
}

// Release ends key's lease if token still holds it, in two round trips: it
// reads the lease and, if it holds token, replaces it with an expired item
// by "cas" (so that a lease taken by another token meanwhile is left
// alone). Errors: ctx ended (wrapping ctx.Err()), an invalid key, network
// failures and the client's timeouts.
func (b *Backend) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	_, lk, err := b.leaseKeys(ctx, "lease", key)
	if err != nil {
		return err
	}
	if _, err := bounded(ctx, func() (struct{}, error) { return struct{}{}, b.release(lk, token) }); err != nil {
		return fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	return nil
}

// Void ends any lease on key with one "delete" of the lease's key, so that
// its holder's SetFenced stores nothing, unless that SetFenced has already
// checked the lease: a Void on its own does not stop a write already past
// its check (memo's Set, which writes after its Void, does; see
// [Backend.SetFenced]). Errors: ctx ended (wrapping ctx.Err()), an
// invalid key, network failures and the client's timeouts.
func (b *Backend) Void(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	_, lk, err := b.leaseKeys(ctx, "lease", key)
	if err != nil {
		return err
	}
	err = b.one(ctx, func() error { return b.client.Delete(lk) })
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcachebackend: lease %q: %w", key, err)
	}
	return nil
}

// deleteIn removes id's value and lease under generation s: the lease
// first; then the value is replaced by a tombstone if there was a lease
// (so that its holder's write, which read the value before the lease was
// deleted, fails), and deleted otherwise.
func (b *Backend) deleteIn(s *genState, id string) error {
	pk, err := s.key(id)
	if err != nil {
		return err
	}
	lk, err := s.leaseKey(id)
	if err != nil {
		return err
	}
	switch err := b.client.Delete(lk); {
	case errors.Is(err, memcache.ErrCacheMiss):
	case err != nil:
		return err
	default:
		return b.client.Set(&memcache.Item{Key: pk, Flags: tombstoneFlags, Expiration: expiration(tombstoneTTL, time.Now())})
	}
	if err := b.client.Delete(pk); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return err
	}
	return nil
}

// at calls the test hook, if any, after stage.
func (f *fenceTest) at(stage string) {
	if f.hook != nil {
		f.hook(stage)
	}
}

// newToken returns a random lease token.
func newToken() string {
	var t [16]byte
	rand.Read(t[:])
	return hex.EncodeToString(t[:])
}
