package memo

import (
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gomemo/memo/internal/store"
)

// DefaultLocalBytes bounds the local tier that functions without a
// backend share: 64 MiB, counting each entry's envelope, its decoded copy
// and its bookkeeping.
const DefaultLocalBytes = 64 << 20

// localTier is the tier of answers kept in the process: each entry's
// envelope and, when the result type can be copied, a decoded copy of its
// own, so that a hit copies rather than decodes. Its deadlines are
// monotonic (see clock.go).
type localTier struct {
	s *store.Store[*item]

	// With an Invalidator (see invalidator.go); zero otherwise.
	id     string                    // origin of the invalidations it publishes
	inv    Invalidator               // nil: a single process
	stop   func()                    // ends the subscription
	bypass atomic.Bool               // not subscribed: neither read nor filled
	seqs   [seqBuckets]atomic.Uint64 // invalidations seen, per bucket of keys
	owed   owed                      // invalidations not yet published
}

// item is one answer in the local tier. It is never modified once stored.
type item struct {
	meta               // wall-clock times, compute duration, kind
	env       []byte   // the whole envelope
	hdr       int      // the envelope's header length: the payload follows
	codec     string   // the codec that wrote env
	fp        [8]byte  // the result type's fingerprint
	etag      [16]byte // the payload's ETag
	freshMono int64    // monotonic: the entry is stale from then; 0: never
	val       any      // a *R kept decoded, or nil
}

func newLocalTier(maxBytes int64) *localTier {
	return &localTier{s: store.New[*item](1<<62, maxBytes, 0)}
}

var defaultLocal = sync.OnceValue(func() *localTier { return newLocalTier(DefaultLocalBytes) })

// get returns the item under key, fresh or still within its stale
// windows, and the monotonic time of s it was read at (0 when the item
// never expires: now was not needed).
func (t *localTier) get(key []byte, s *state) (it *item, now int64, ok bool) {
	if t.bypass.Load() {
		return nil, 0, false
	}
	it, deadline, ok := t.s.Get(key)
	if !ok {
		return nil, 0, false
	}
	if deadline != 0 {
		if s.sysClock {
			now = monoNow() // no interface call on the hit path
		} else {
			now = s.clock.Mono()
		}
		if now >= deadline {
			return nil, 0, false
		}
	}
	return it, now, true
}

// stale reports whether it is past its freshness at monotonic time now.
func (it *item) stale(now int64) bool { return it.freshMono != 0 && now >= it.freshMono }

// set keeps it under key until the monotonic deadline (0: until evicted);
// cost is what its decoded copy holds. seq is key's invalidation count
// when what it holds was read or computed: if an invalidation of key
// came since, it keeps nothing. It reports whether it kept it.
func (t *localTier) set(key string, it *item, cost, deadline, now int64, seq uint64) (bool, error) {
	if t.bypass.Load() || t.seq(key) != seq {
		// An invalidation came since what it holds was read or computed
		// (of this key, or of another in its bucket): keep no copy, not
		// even an older one.
		t.s.Delete(key)
		return false, nil
	}
	cost += store.AllocSize(len(key)) + store.AllocSize(len(it.env)) + itemSize
	if err := t.s.Set(key, it, cost, deadline, now); err != nil {
		return false, err
	}
	if t.seq(key) != seq { // an invalidation came meanwhile: it may have missed this copy
		t.s.Delete(key)
		return false, nil
	}
	return true, nil
}

func (t *localTier) delete(key string) { t.s.Delete(key) }
func (t *localTier) clear(ns string)   { t.s.Clear(ns) }

var itemSize = store.AllocSize(int(unsafe.Sizeof(item{})))

func (it *item) payload() []byte { return it.env[it.hdr:] }

// entry is the Entry of a local hit on it, read at now on the monotonic
// clock.
func (it *item) entry(c Codec, now int64) Entry {
	var at int64 // the wall time at now: fresh-until less the time left
	if it.freshMono != 0 {
		at = it.freshUntil - (it.freshMono - now)
	}
	return Entry{
		CheckedAt:  checkedAt(it.freshUntil, at),
		Payload:    it.payload(),
		Codec:      c,
		Hit:        true,
		Cached:     true,
		StoredAt:   unixTime(it.storedAt),
		FreshUntil: unixTime(it.freshUntil),
		etag:       it.etag,
		meta:       it.meta,
	}
}

func allocSize(n int) int64 { return store.AllocSize(n) }

// The local tier keys entries by a short name of the namespace key, given
// once per namespace key for the life of the process, and the id: shorter
// keys are quicker to hash and compare on every hit. Names start with a
// byte no namespace key holds, so they never meet a backend key.
var (
	localNames sync.Map // namespace key -> its short name
	localSeq   atomic.Uint64
)

func localName(nsKey string) string {
	if n, ok := localNames.Load(nsKey); ok {
		return n.(string)
	}
	n, _ := localNames.LoadOrStore(nsKey, "\x01"+strconv.FormatUint(localSeq.Add(1), 36))
	return n.(string)
}

// appendLocalKey appends the local tier's key for a backend key of this
// namespace: its short name, then ":" and the id.
func (s *state) appendLocalKey(dst []byte, key string) []byte {
	return append(append(dst, s.localNS...), key[len(s.nsKey):]...)
}
