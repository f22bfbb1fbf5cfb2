package httpadapter

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gomemo/memo"
)

// prepared holds the header values of one answer. Those of a fresh hit are
// kept in the handler's hotCache and reused by the hits that follow on the
// same entry while its remaining lifetime, in whole seconds, and its
// public or private scope stay the same; every other answer (a miss, a
// stale answer, a bypass) builds its own.
type prepared struct {
	// What the values were built from: the entry (its ETag, times and
	// stale windows), the remaining lifetime in whole seconds (-1 for
	// none), and whether the answer is public.
	id                   string // the entry's ETag
	storedAt, freshUntil int64  // UnixNano of the entry's times
	swr, sie             time.Duration
	ttl                  int64
	isPublic             bool

	// The values, by field (vETag...). A hit's response is given slices
	// of this array (one element each, capacity ending there, so that
	// Header.Add copies): they are shared by every response that reuses
	// p, and never written once p is in the hotCache.
	vals [nVals]string
}

// The fields of prepared.vals.
const (
	vETag = iota
	vVary
	vCacheControl
	vCacheStatus
	vCache // the HIT/MISS header
	vLastModified
	vContentType
	vContentLength
	nVals
)

// field returns the value of field i as a header's value slice.
func (p *prepared) field(i int) []string { return p.vals[i : i+1 : i+1] }

// sameEntry reports whether p was built for e.
func (p *prepared) sameEntry(e *memo.Entry) bool {
	return p.storedAt == e.StoredAt.UnixNano() && p.freshUntil == e.FreshUntil.UnixNano() &&
		p.swr == e.StaleWhileRevalidate && p.sie == e.StaleIfError
}

// same reports whether p's values hold for a fresh hit on its entry with
// ttl seconds left, public or not.
func (p *prepared) same(ttl int64, public bool) bool {
	return p.ttl == ttl && p.isPublic == public
}

// hotCache keeps the prepared values of recently hit entries. Slots are
// picked by a hash of the entry's ETag; a slot holds one entry's values,
// and the latest to land in it replaces them (entries that share a slot
// take turns, each rebuilding its values). Readers load a slot without a
// lock and never change what it points to.
type hotCache struct {
	slots [hotSlots]atomic.Pointer[prepared]
}

const hotSlots = 256

// slot returns the slot of the entry whose quoted ETag is tag.
func (c *hotCache) slot(tag []byte) *atomic.Pointer[prepared] {
	h := uint32(2166136261) // FNV-1a over the tag's first characters
	for _, b := range tag[:min(len(tag), 6)] {
		h = (h ^ uint32(b)) * 16777619
	}
	return &c.slots[h%hotSlots]
}

// values builds the header values of the answer ans to e: id is e's ETag,
// ttl its remaining lifetime in whole seconds (-1 for none) at now, and
// public and reason say what the handler decided for the request.
func (h *handler[A, R]) values(e *memo.Entry, ans *answer, id string, ttl int64, now time.Time, public bool, reason why) prepared {
	p := prepared{
		id: id, storedAt: e.StoredAt.UnixNano(), freshUntil: e.FreshUntil.UnixNano(),
		swr: e.StaleWhileRevalidate, sie: e.StaleIfError, ttl: ttl, isPublic: public,
	}
	p.vals[vETag] = ans.etag
	p.vals[vVary] = h.vary
	p.vals[vContentType] = ans.ctype
	switch {
	case !e.Cached:
		p.vals[vCache] = "BYPASS"
	case e.Hit:
		p.vals[vCache] = "HIT"
	default:
		p.vals[vCache] = "MISS"
	}
	if h.cfg.weakETag {
		p.vals[vETag] = "W/" + ans.etag
	}
	// The values are written into one buffer and become one string.
	var buf [256]byte
	b := buf[:0]
	var ccEnd, csEnd int
	if !e.Cached {
		p.vals[vCacheControl] = "no-store"
		switch reason {
		case credentials:
			p.vals[vCacheStatus] = csBypassIdentity
		case byRequest:
			p.vals[vCacheStatus] = csRequest
		default:
			p.vals[vCacheStatus] = csBypass
		}
	} else {
		b = append(b, scope(public)...)
		hasTTL := ttl >= 0 // Cache-Status's ttl
		switch {
		case ttl < 0:
			b = append(b, ", no-cache"...)
		case e.Stale:
			// Fresh for no cache. An RFC 5861 cache counts the answer
			// stale from when it received it: each window still open is
			// stated as the whole seconds left of it, so that such a
			// cache may serve it stale as long as memo would, and no
			// longer.
			hasTTL, ttl = true, min(seconds(e.FreshUntil.Sub(now)), -1)
			b = append(b, ", max-age=0"...)
			if left := seconds(e.FreshUntil.Add(e.StaleWhileRevalidate).Sub(now)); e.StaleWhileRevalidate > 0 && left > 0 {
				b = strconv.AppendInt(append(b, ", stale-while-revalidate="...), left, 10)
			}
			if left := seconds(e.FreshUntil.Add(e.StaleIfError).Sub(now)); e.StaleIfError > 0 && left > 0 {
				b = strconv.AppendInt(append(b, ", stale-if-error="...), left, 10)
			}
		default:
			// max-age is the remaining lifetime in whole seconds, and no
			// Age is sent: a cache that ignores Age keeps the answer no
			// longer than memo does, and one that honours it counts from
			// zero. The stale windows (RFC 5861) follow that lifetime,
			// unless it is none (ExpireFunc said not to store the answer).
			b = strconv.AppendInt(append(b, ", max-age="...), ttl, 10)
			if e.FreshUntil.After(e.StoredAt) {
				if n := seconds(e.StaleWhileRevalidate); n > 0 {
					b = strconv.AppendInt(append(b, ", stale-while-revalidate="...), n, 10)
				}
				if n := seconds(e.StaleIfError); n > 0 {
					b = strconv.AppendInt(append(b, ", stale-if-error="...), n, 10)
				}
			}
		}
		ccEnd = len(b)
		switch {
		case !h.cfg.cacheStatus:
		case e.Hit && hasTTL:
			b = strconv.AppendInt(append(b, csHit+"; ttl="...), ttl, 10)
		case e.Hit:
			p.vals[vCacheStatus] = csHit
		case reason == byRequest && e.Stored:
			p.vals[vCacheStatus] = csRefresh
		case reason == byRequest:
			p.vals[vCacheStatus] = csRequest
		case e.Stored:
			p.vals[vCacheStatus] = csMiss
		default: // the backend refused or failed the write
			p.vals[vCacheStatus] = csMissNotStored
		}
		csEnd = len(b)
		b = appendHTTPDate(b, e.StoredAt.Truncate(time.Second))
	}
	lmEnd := len(b)
	b = strconv.AppendInt(b, int64(len(ans.body)), 10)
	str := string(b)
	if e.Cached {
		p.vals[vCacheControl] = str[:ccEnd]
		if p.vals[vCacheStatus] == "" {
			p.vals[vCacheStatus] = str[ccEnd:csEnd]
		}
		p.vals[vLastModified] = str[csEnd:lmEnd]
	}
	p.vals[vContentLength] = str[lmEnd:]
	return p
}
