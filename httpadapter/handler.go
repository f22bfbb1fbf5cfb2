// Package httpadapter serves a memoized function ([memo.Func]) over HTTP, the
// way fastapi-cache's @cache decorator serves a FastAPI endpoint, with the
// HTTP caching semantics that fastapi-cache gets wrong done right: quoted,
// stable ETags; conditional requests (If-None-Match lists, "*", weak
// comparison, If-Modified-Since) answered with 304 on hits and misses alike;
// request Cache-Control directives parsed as lists; Cache-Control max-age
// that is always a non-negative integer; the standard Cache-Status header;
// and no sharing of cached answers between users unless the handler is told
// the key includes the user. docs/http.md lists every header it sends and
// honours.
//
//	user := memo.New(fetchUser, memo.Expire(time.Minute))
//	mux.Handle("GET /users/{id}", httpadapter.Handler(user, httpadapter.PathInt64("id")))
package httpadapter

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gomemo/memo"
)

// Handler returns an http.Handler that answers each request with f's result
// for the argument decode extracts from it, as JSON
// ("Content-Type: application/json", status 200).
//
// GET and HEAD are answered through f's cache (HEAD sends the same headers,
// Content-Length included, without the body). The request's Cache-Control
// chooses how: no-store computes without reading or writing the cache;
// no-cache, max-age=0, a max-age smaller than the entry's age (or any
// max-age, when the entry is stale) or a min-fresh larger than its remaining
// lifetime recompute and store; Pragma: no-cache counts as no-cache when
// there is no Cache-Control. Requests with Authorization or Cookie bypass
// the cache unless [PerUser] is given. If-None-Match (or, without it,
// If-Modified-Since) that matches the answer gets 304 Not Modified, whether
// the answer was a hit or just computed. Cached answers carry ETag,
// Cache-Control, Last-Modified, Vary, Cache-Status and X-Cache (see
// [CacheHeader]); docs/http.md describes each.
//
// Cache-Control is "private, max-age=N" and Age is A, where A is how many
// whole seconds ago fn computed the answer and N - A the entry's remaining
// lifetime in whole seconds (never negative): HTTP caches and browsers count
// the answer fresh for N - A more seconds, as RFC 9111 has them do with what
// a cache serves. Entries that never expire get "private, no-cache" (clients
// revalidate, cheaply, with If-None-Match); [Public] makes it public. When f
// has [memo.StaleWhileRevalidate] or [memo.StaleIfError], Cache-Control adds
// "stale-while-revalidate=W" and "stale-if-error=W" (RFC 5861), W being the
// window in whole seconds, rounded down (a window under a second is left
// out). A stale answer (memo serves it within one of those windows) has
// "max-age=0", so that no cache, even one that ignores Age, counts it fresh,
// its true Age, each window still open as Age plus the whole seconds left of
// it (an RFC 5861 cache may then serve it stale exactly as long as memo
// would), and "Cache-Status: memo; hit; ttl=T" with T negative: minus the
// seconds since it expired, rounded up (at least 1). Answers computed
// without the cache (request no-store, credentials) say "Cache-Control:
// no-store". The handler never sends Set-Cookie.
//
// Other methods run fn every time, bypassing the cache (nothing is read or
// stored), ignore conditional headers, and send no caching headers; so do
// GET and HEAD when f's cache is off (memo.Enabled(false)) or the key cannot
// be built.
//
// When f's codec is [memo.JSON] the stored payload is the body, written as
// is; with another codec the entry is decoded and re-encoded with
// [memo.JSON] on each request, and the ETag is the hash of that body: the
// same ETag as under memo.JSON. A custom codec named "json" must produce
// JSON text, since its payload is served as is.
//
// Errors: a decode error is answered 400 with "Bad Request: " and the
// error's text, so decode must return messages fit for the client; an error
// of fn is answered 500 "Internal Server Error", never with its text, and
// passed to [ErrorLog]. An error whose chain holds a type with a method
// HTTPStatus() int returning 400–599 gets that status instead (a 404 for a
// missing record), with the status text as body; [ErrorStatus] overrides
// both. Only a 4xx answer to a decode error shows the error's text. Error
// answers carry "Cache-Control: no-store", except an error memo remembers
// ([memo.NegativeCache], [memo.CacheErrors]) and answers without running fn:
// it gets its status the same way, by default 404 for a not-found and 500
// for another error, and is an answer from the cache: "Cache-Status: memo;
// hit; ttl=T", "Cache-Control: private, max-age=T" (public under [Public])
// where T is the whole seconds left of its lifetime; no Age; Vary and
// X-Cache as on answers; and never a stale body. A remembered not-found
// keeps only the sentinel and fn's text, not fn's error: give the sentinel
// an HTTPStatus method, or map it with [ErrorStatus], for a status other
// than 404 (and for the answer in which fn returned it). If the client goes
// away while fn runs, the answer is 503 and nothing is logged. A panic in fn
// or decode propagates to net/http, which logs it and drops the connection.
//
// Handler panics if f or decode is nil or if [Public] and [PerUser] are both
// given. The handler is safe for concurrent use; concurrent misses for one
// key run fn once (see [memo.Func.Call]).
func Handler[A, R any](f *memo.Func[A, R], decode func(*http.Request) (A, error), opts ...Option) http.Handler {
	if f == nil {
		panic("httpadapter: Handler(nil, ...)")
	}
	if decode == nil {
		panic("httpadapter: Handler: decode is nil")
	}
	c := defaultConfig()
	for _, o := range opts {
		o.apply(&c)
	}
	if c.public && c.perUser {
		panic("httpadapter: Public and PerUser together would let shared caches hold per-user answers")
	}
	return &handler[A, R]{f: f, decode: decode, cfg: c, vary: c.varyValue()}
}

type handler[A, R any] struct {
	f      *memo.Func[A, R]
	decode func(*http.Request) (A, error)
	cfg    config
	vary   string // the Vary value
}

// Cache-Status values (RFC 9211); the cache's name is "memo". A hit with an
// expiry adds "; ttl=N".
const (
	csHit            = "memo; hit"
	csMiss           = "memo; fwd=miss; stored"
	csRefresh        = "memo; fwd=request; stored"
	csNoStore        = "memo; fwd=request"
	csBypass         = "memo; fwd=bypass"
	csBypassIdentity = "memo; fwd=bypass; detail=credentials"
)

// why says what chose the lookup mode.
type why int

const (
	plain       why = iota // UseCache
	byRequest              // request directives
	credentials            // Authorization or Cookie without PerUser
)

func (h *handler[A, R]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, err := h.decode(r)
	if err != nil {
		h.fail(w, r, err, http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.serveUncached(w, r, a)
		return
	}

	ctx := r.Context()
	dir := requestDirectives(r.Header)
	mode, reason := memo.UseCache, plain
	switch {
	case !h.cfg.perUser && hasCredentials(r.Header):
		mode, reason = memo.Bypass, credentials
	case dir.noStore:
		mode, reason = memo.Bypass, byRequest
	case dir.noCache || dir.maxAge == 0:
		mode, reason = memo.Refresh, byRequest
	}
	e, err := h.f.Lookup(ctx, a, mode)
	now := h.cfg.now()
	if e != nil && e.Hit && tooOld(e, dir, now) {
		reason = byRequest
		e, err = h.f.Lookup(ctx, a, memo.Refresh)
		now = h.cfg.now()
	}
	if err != nil {
		if e != nil && e.Hit {
			// An error of fn that memo remembers (NegativeCache,
			// CacheErrors): an answer from the cache, with a lifetime.
			h.failRemembered(w, r, e, err, now)
			return
		}
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}
	if !e.Cached && mode != memo.Bypass {
		// Caching is off for f (Enabled(false)), or the key could not be
		// built: answer like an uncached endpoint, as fastapi-cache does.
		h.serveBody(w, r, e)
		return
	}
	body, etag, err := h.body(e)
	if err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}

	// Conditional request: If-None-Match wins; If-Modified-Since only
	// without it, and only against a Last-Modified we send.
	lastMod := e.StoredAt.Truncate(time.Second)
	notModified := false
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		notModified = matchIfNoneMatch(inm, etag)
	} else if e.Cached {
		if ims, ok := ifModifiedSince(r.Header, now); ok {
			notModified = !lastMod.After(ims)
		}
	}

	// The per-response values are written into one buffer and become one
	// string; vals holds every header's value slice, so that no slice is
	// shared between responses: two allocations in all.
	var buf [256]byte
	b := buf[:0]
	var cc, cs string // constant values, when not in b
	var ccEnd, csEnd, lmEnd, ageEnd int
	ttl, age := int64(0), int64(0) // ttl: Cache-Status's, when hasTTL
	hasTTL := false
	if !e.Cached {
		cc = "no-store"
		switch reason {
		case credentials:
			cs = csBypassIdentity
		case byRequest:
			cs = csNoStore
		default:
			cs = csBypass
		}
	} else {
		b = append(b, h.scope(w)...)
		age = max(seconds(now.Sub(e.StoredAt)), 0)
		switch {
		case e.FreshUntil.IsZero():
			b = append(b, ", no-cache"...)
		case e.Stale:
			// Fresh for no cache, not even one that ignores Age. An RFC
			// 5861 cache counts the answer stale by Age seconds from the
			// start: each window is stated as Age plus what is left of
			// it, so that such a cache may serve it stale as long as
			// memo would, and no longer.
			hasTTL, ttl = true, min(seconds(e.FreshUntil.Sub(now)), -1)
			b = append(b, ", max-age=0"...)
			if left := seconds(e.FreshUntil.Add(e.StaleWhileRevalidate).Sub(now)); e.StaleWhileRevalidate > 0 && left > 0 {
				b = strconv.AppendInt(append(b, ", stale-while-revalidate="...), age+left, 10)
			}
			if left := seconds(e.FreshUntil.Add(e.StaleIfError).Sub(now)); e.StaleIfError > 0 && left > 0 {
				b = strconv.AppendInt(append(b, ", stale-if-error="...), age+left, 10)
			}
		default:
			// max-age is the lifetime and Age how much of it has passed, as
			// a cache states them (RFC 9111 section 4.2): clients take
			// max-age - Age, the remaining whole seconds, as fresh. The
			// stale windows (RFC 5861) follow that lifetime, unless it is
			// none (ExpireFunc said not to store the answer).
			hasTTL, ttl = true, max(seconds(e.FreshUntil.Sub(now)), 0)
			b = strconv.AppendInt(append(b, ", max-age="...), ttl+age, 10)
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
		case e.Hit && hasTTL:
			b = strconv.AppendInt(append(b, csHit+"; ttl="...), ttl, 10)
		case e.Hit:
			cs = csHit
		case reason == byRequest && e.Stored:
			cs = csRefresh
		case reason == byRequest:
			cs = csRefresh[:len(csRefresh)-len("; stored")]
		case e.Stored:
			cs = csMiss
		default: // the backend refused or failed the write
			cs = csMiss[:len(csMiss)-len("; stored")]
		}
		csEnd = len(b)
		if !notModified {
			b = appendHTTPDate(b, lastMod)
		}
	}
	lmEnd = len(b)
	if e.Cached {
		b = strconv.AppendInt(b, age, 10)
	}
	ageEnd = len(b)
	if !notModified {
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	str := string(b)
	if cc == "" {
		cc = str[:ccEnd]
	}
	if cs == "" {
		cs = str[ccEnd:csEnd]
	}

	vals := make([]string, 9)
	hd := w.Header()
	if e.Cached {
		hd["Age"] = set(vals, 8, str[lmEnd:ageEnd])
	}
	hd["Etag"] = set(vals, 0, etag)
	hd["Vary"] = set(vals, 1, h.vary)
	hd["Cache-Control"] = set(vals, 2, cc)
	hd["Cache-Status"] = set(vals, 3, cs)
	if h.cfg.cacheHeader != "" {
		x := "MISS"
		if !e.Cached {
			x = "BYPASS"
		} else if e.Hit {
			x = "HIT"
		}
		hd[h.cfg.cacheHeader] = set(vals, 4, x)
	}
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if e.Cached {
		hd["Last-Modified"] = set(vals, 5, str[csEnd:lmEnd])
	}
	hd["Content-Type"] = set(vals, 6, "application/json")
	hd["Content-Length"] = set(vals, 7, str[ageEnd:])
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck // the client went away; nothing to do
	}
}

// set stores v in vals[i] and returns that element as a one-element slice
// whose capacity ends there, so that appending to it copies.
func set(vals []string, i int, v string) []string {
	vals[i] = v
	return vals[i : i+1 : i+1]
}

// appendHTTPDate appends t in the IMF-fixdate form of http.TimeFormat
// ("Mon, 02 Jan 2006 15:04:05 GMT"), faster than time.Time.AppendFormat.
func appendHTTPDate(b []byte, t time.Time) []byte {
	t = t.UTC()
	yy, mm, dd := t.Date()
	hh, mi, ss := t.Clock()
	const days = "SunMonTueWedThuFriSat"
	const months = "JanFebMarAprMayJunJulAugSepOctNovDec"
	wd := int(t.Weekday()) * 3
	mo := (int(mm) - 1) * 3
	b = append(b, days[wd:wd+3]...)
	b = append(b, ", "...)
	b = append2(b, dd)
	b = append(b, ' ')
	b = append(b, months[mo:mo+3]...)
	b = append(b, ' ')
	if yy < 1000 || yy > 9999 {
		// Outside IMF-fixdate's four digits: fall back to the slow path.
		return t.AppendFormat(b[:len(b)-12], http.TimeFormat)
	}
	b = append2(b, yy/100)
	b = append2(b, yy%100)
	b = append(b, ' ')
	b = append2(b, hh)
	b = append(b, ':')
	b = append2(b, mi)
	b = append(b, ':')
	b = append2(b, ss)
	return append(b, " GMT"...)
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

// seconds is d in whole seconds, rounded down (towards the past for a
// negative d).
func seconds(d time.Duration) int64 {
	n := int64(d / time.Second)
	if d%time.Second < 0 {
		n--
	}
	return n
}

// scope is the first Cache-Control directive of an answer from the cache:
// "public" under Public, unless a middleware has set a cookie on it.
func (h *handler[A, R]) scope(w http.ResponseWriter) string {
	if h.cfg.public && len(w.Header()["Set-Cookie"]) == 0 {
		return "public"
	}
	return "private"
}

// tooOld reports whether a hit (an answer or a remembered error) fails the
// request's max-age or min-fresh. A request with max-age takes no stale
// answer, however young (it would need max-stale, which is not honoured).
func tooOld(e *memo.Entry, d directives, now time.Time) bool {
	if d.maxAge > 0 && (e.Stale || now.Sub(e.StoredAt) > time.Duration(d.maxAge)*time.Second) {
		return true
	}
	if d.minFresh > 0 && !e.FreshUntil.IsZero() && e.FreshUntil.Sub(now) < time.Duration(d.minFresh)*time.Second {
		return true
	}
	return false
}

// serveUncached answers a request of another method than GET or HEAD: fn
// runs, the cache is neither read nor written, no caching header is sent.
func (h *handler[A, R]) serveUncached(w http.ResponseWriter, r *http.Request, a A) {
	e, err := h.f.Lookup(r.Context(), a, memo.Bypass)
	if err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}
	h.serveBody(w, r, e)
}

// serveBody writes e as a plain 200 answer without caching headers.
func (h *handler[A, R]) serveBody(w http.ResponseWriter, r *http.Request, e *memo.Entry) {
	body, _, err := h.body(e)
	if err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}
	vals := make([]string, 2)
	hd := w.Header()
	hd["Content-Type"] = set(vals, 0, "application/json")
	hd["Content-Length"] = set(vals, 1, strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body) //nolint:errcheck
	}
}

// body returns the JSON body for e and its entity-tag. Another codec's
// payload is decoded and re-encoded with memo.JSON, so that the body and its
// ETag are the bytes the JSON codec would have stored.
func (h *handler[A, R]) body(e *memo.Entry) ([]byte, string, error) {
	if e.Codec.Name() == memo.JSON.Name() {
		return e.Payload, e.ETag(), nil
	}
	v, err := h.f.Decode(e)
	if err != nil {
		return nil, "", err
	}
	b, err := memo.JSON.Marshal(&v)
	if err != nil {
		return nil, "", err
	}
	return b, etagOf(b), nil
}

// etagOf computes an entity-tag the way memo does for a JSON payload (the
// first 16 bytes of SHA-256, base64url, quoted), so that a body has the same
// ETag whichever codec stored it.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	var b [24]byte
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:23], sum[:16])
	b[23] = '"'
	return string(b[:])
}

// statusCoder is what an error implements to choose its HTTP status.
type statusCoder interface{ HTTPStatus() int }

// status maps an error to its HTTP status: ErrorStatus, then HTTPStatus()
// in the error's chain; 0 when neither gives one from 400 to 599.
func (h *handler[A, R]) status(err error) int {
	status := 0
	if h.cfg.errorStatus != nil {
		status = h.cfg.errorStatus(err)
	}
	if !isErrorStatus(status) {
		var sc statusCoder
		if errors.As(err, &sc) {
			status = sc.HTTPStatus()
		}
	}
	if !isErrorStatus(status) {
		return 0
	}
	return status
}

// fail answers an error: status from ErrorStatus, then HTTPStatus(), then
// def. The body is the status text, plus the error's text for a 4xx decode
// error. 5xx are logged, except when the client left.
func (h *handler[A, R]) fail(w http.ResponseWriter, r *http.Request, err error, def int) {
	status := h.status(err)
	gone := false
	if status == 0 {
		status = def
		if ctxErr := r.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			status = http.StatusServiceUnavailable
			gone = errors.Is(ctxErr, context.Canceled)
		}
	}
	msg := http.StatusText(status)
	if msg == "" {
		msg = "Error"
	}
	if def == http.StatusBadRequest && status < 500 {
		msg += ": " + clientText(err.Error())
	}
	if status >= 500 && !gone {
		h.cfg.errorLog(r, err)
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	delete(hd, "Etag")
	delete(hd, "Last-Modified")
	http.Error(w, msg, status)
}

// failRemembered answers an error of fn that memo remembered and e, the
// entry that holds it: a not-found of NegativeCache, or another error of
// CacheErrors (which matches memo.ErrCached). The status comes from the
// error as in fail, by default 404 for a not-found (memo keeps only its
// sentinel and text, so a status that only fn's own error carried is
// lost) and 500 for another error. It is an answer from the cache:
// Cache-Status says hit, and max-age is its remaining lifetime, with no
// Age, so that no cache keeps it longer than memo does. The body is the
// status text; 5xx are logged.
func (h *handler[A, R]) failRemembered(w http.ResponseWriter, r *http.Request, e *memo.Entry, err error, now time.Time) {
	status := h.status(err)
	if status == 0 {
		status = http.StatusNotFound
		if errors.Is(err, memo.ErrCached) {
			status = http.StatusInternalServerError
		}
	}
	msg := http.StatusText(status)
	if msg == "" {
		msg = "Error"
	}
	if status >= 500 {
		h.cfg.errorLog(r, err)
	}
	hd := w.Header()
	delete(hd, "Etag")
	delete(hd, "Last-Modified")
	if e.FreshUntil.IsZero() {
		hd.Set("Cache-Control", h.scope(w)+", no-cache")
		hd.Set("Cache-Status", csHit)
	} else {
		ttl := strconv.FormatInt(max(seconds(e.FreshUntil.Sub(now)), 0), 10)
		hd.Set("Cache-Control", h.scope(w)+", max-age="+ttl)
		hd.Set("Cache-Status", csHit+"; ttl="+ttl)
	}
	hd.Set("Vary", h.vary)
	if h.cfg.cacheHeader != "" {
		hd.Set(h.cfg.cacheHeader, "HIT")
	}
	http.Error(w, msg, status)
}

func isErrorStatus(s int) bool { return 400 <= s && s <= 599 }

// clientText makes an error message fit for a one-line plain-text body:
// valid UTF-8, no control characters, at most 200 bytes.
func clientText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		i := 200
		for i > 0 && s[i]&0xC0 == 0x80 {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}
