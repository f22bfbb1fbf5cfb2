// Package httpadapter serves a memoized function ([memo.Func]) over HTTP, the
// way fastapi-cache's @cache decorator serves a FastAPI endpoint, with the
// HTTP caching semantics that fastapi-cache gets wrong done right: quoted,
// stable ETags; conditional requests (If-None-Match lists, "*", weak
// comparison, If-Modified-Since) answered with 304 on hits and misses alike,
// and If-Match and If-Unmodified-Since with 412; request Cache-Control
// directives parsed as lists; Cache-Control max-age that is always the
// non-negative remaining lifetime; the standard Cache-Status header; Vary
// merged with what middleware set; and no sharing of cached answers between
// users unless the handler is told the key includes the user, or that the
// answer does not depend on the user. docs/http.md lists every header it sends and
// honours.
//
//	user := memo.New(fetchUser, memo.Expire(time.Minute))
//	mux.Handle("GET /users/{id}", httpadapter.Handler(user, httpadapter.PathInt64("id")))
package httpadapter

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gomemo/memo"
)

// Handler returns an http.Handler that answers each request with f's result
// for the argument decode extracts from it, as JSON
// ("Content-Type: application/json", status 200; see [ContentType] for
// other bodies and [Responder] for other statuses).
//
// GET and HEAD are answered through f's cache (HEAD sends the same headers,
// Content-Length included, without the body). The request's Cache-Control
// chooses how, unless [IgnoreRequestDirectives] is given: no-store
// computes without reading or writing the cache; no-cache, max-age=0, a
// max-age smaller than the entry's age (or any max-age, when the entry is
// stale) or a min-fresh larger than its remaining lifetime recompute and
// store; Pragma: no-cache counts as no-cache when there is no
// Cache-Control. Requests with Authorization or Cookie bypass the cache
// unless [PerUser] or [IgnoreCredentials] is given. Concurrent requests
// that compute share one run of fn: misses and recomputes through memo's
// flights, no-store requests through the handler's, and requests that
// bypass for their credentials only with requests bearing the same
// Authorization and Cookie. Preconditions are evaluated in the order of
// RFC 9110 section 13.2.2: If-Match (strong comparison, "*" matches) and,
// without it, If-Unmodified-Since (against Last-Modified, so only on an
// answer from or into the cache) answer 412 Precondition Failed when they
// fail; then If-None-Match (weak comparison) or, without it,
// If-Modified-Since answer 304 Not Modified when they match, whether the
// answer was a hit or just computed. Cached answers carry ETag,
// Cache-Control, Last-Modified, Vary, Cache-Status (see [CacheStatus]) and
// X-Cache (see [CacheHeader]); docs/http.md describes each. Vary names
// that a middleware set on the response before the handler wrote it are
// kept, the handler's added after them.
//
// Cache-Control is "private, max-age=N", N being the entry's remaining
// lifetime in whole seconds, rounded down (never negative), and no Age is
// sent: every cache, whether it honours Age or not, keeps the answer at
// most as long as memo does. Entries that never expire get "private,
// no-cache" (clients revalidate, cheaply, with If-None-Match); [Public]
// makes it public. When f has [memo.StaleWhileRevalidate] or
// [memo.StaleIfError], Cache-Control adds "stale-while-revalidate=W" and
// "stale-if-error=W" (RFC 5861), W being the window in whole seconds,
// rounded down (a window under a second is left out). A stale answer (memo
// serves it within one of those windows) has "max-age=0", so that no cache
// counts it fresh, each window still open as the whole seconds left of it
// (an RFC 5861 cache may then serve it stale as long as memo would), and
// "Cache-Status: memo; hit; ttl=T" with T negative: minus the seconds since
// it expired, rounded up (at least 1). Answers computed without the cache
// (request no-store, credentials) say "Cache-Control: no-store". A 304 to
// an answer fn computed for the request says "fwd-status=200" in
// Cache-Status. The handler never sends Set-Cookie.
//
// Other methods run fn every time, bypassing the cache (nothing is read or
// stored), ignore conditional headers, and send no caching headers; so do
// GET and HEAD when f's cache is off (memo.Enabled(false)) or the key cannot
// be built.
//
// When f's codec is [memo.JSON] the stored payload is the body, written as
// is; with another codec the entry is decoded and re-encoded with
// [memo.JSON] once, kept by the handler for later requests (up to 64
// entries), and the ETag is the hash of that body: the same ETag as under
// memo.JSON. A custom codec named "json" must produce JSON text, since its
// payload is served as is.
//
// Errors: a decode error is answered 400 with "Bad Request: " and the
// error's text, so decode must return messages fit for the client; an error
// of fn is answered 500 "Internal Server Error", never with its text, and
// passed to [ErrorLog]. An error whose chain holds a type with a method
// HTTPStatus() int returning 400–599 gets that status instead (a 404 for a
// missing record), with the status text as body, followed by ": " and its
// client message when the chain holds an HTTPDetail() string method (see
// [StatusError], [Error]); [ErrorStatus] overrides the status, and
// [ErrorBody] how the body is written ([JSONError] for FastAPI's
// {"detail": ...}). Error answers carry "Cache-Control: no-store", except
// an error memo remembers ([memo.NegativeCache], [memo.CacheErrors]) and
// answers without running fn: it gets its status the same way, by default
// 404 for a not-found and 500 for another error, and is an answer from the
// cache: "Cache-Status: memo; hit; ttl=T", "Cache-Control: private,
// max-age=T" (public under [Public]) where T is the whole seconds left of
// its lifetime; no Age; Vary and X-Cache as on answers; and never a stale
// body. A remembered not-found keeps only the sentinel and fn's text, not
// fn's error: make the sentinel a [StatusError], give it an HTTPStatus
// method, or map it with [ErrorStatus], for a status other than 404 (and
// for the answer in which fn returned it). Preconditions do not apply to
// error answers. If the client goes away while fn runs, the answer is 503
// and nothing is logged. A panic in fn or decode propagates to net/http,
// which logs it and drops the connection (every request sharing the run of
// fn gets the panic).
//
// Handler panics if f or decode is nil, if [Public] and [PerUser] are both
// given, or [IgnoreCredentials] and [PerUser]. The handler is safe for
// concurrent use. On hits the header values' slices are shared between
// responses (net/http copies them when it writes the header): a middleware
// changes a field the handler set with Header.Set, Add or Del, never by
// assigning into its slice.
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
	if c.ignoreCreds && c.perUser {
		panic("httpadapter: IgnoreCredentials and PerUser contradict each other: does the answer depend on the caller or not?")
	}
	h := &handler[A, R]{f: f, decode: decode, cfg: c, vary: c.varyValue(), shape: shapeOf[R](c.contentType != "")}
	h.ctype = c.contentType
	if h.ctype == "" {
		h.ctype = "application/json"
	}
	return h
}

var _ http.Handler = (*handler[int, int])(nil)

type handler[A, R any] struct {
	f       *memo.Func[A, R]
	decode  func(*http.Request) (A, error)
	cfg     config
	vary    string // the handler's own Vary names, "" for none
	ctype   string // the Content-Type of answers
	shape   shape  // how a result becomes a body
	renders renderCache
	hot     hotCache
	flights flightGroup
}

// Cache-Status values (RFC 9211); the cache's name is "memo". A hit with an
// expiry adds "; ttl=N".
const (
	csHit            = "memo; hit"
	csMiss           = "memo; fwd=miss; stored"
	csMissNotStored  = "memo; fwd=miss"
	csRefresh        = "memo; fwd=request; stored"
	csRequest        = "memo; fwd=request"
	csBypass         = "memo; fwd=bypass"
	csBypassIdentity = "memo; fwd=bypass; detail=credentials"
)

// withFwdStatus adds "; fwd-status=<status>" after cs's fwd parameter.
func withFwdStatus(cs string, status int) string {
	i := strings.Index(cs, "fwd=")
	if i < 0 {
		return cs
	}
	p := "; fwd-status=" + strconv.Itoa(status)
	j := strings.IndexByte(cs[i:], ';')
	if j < 0 {
		return cs + p
	}
	return cs[:i+j] + p + cs[i+j:]
}

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
	fl := readFields(r.Header)
	dir := noDirectives
	if !h.cfg.ignoreDirectives {
		dir = directivesOf(fl.cacheControl, fl.pragma)
	}
	mode, reason := memo.UseCache, plain
	switch {
	case !h.cfg.perUser && !h.cfg.ignoreCreds && fl.credentials:
		mode, reason = memo.Bypass, credentials
	case dir.noStore:
		mode, reason = memo.Bypass, byRequest
	case dir.noCache || dir.maxAge == 0:
		mode, reason = memo.Refresh, byRequest
	}
	var e *memo.Entry
	if mode == memo.Bypass {
		e, err = h.shared(ctx, r, a, reason == credentials)
	} else {
		e, err = h.f.Lookup(ctx, a, mode)
	}
	now := h.now(e)
	if e != nil && e.Hit && tooOld(e, dir, now) {
		reason = byRequest
		e, err = h.f.Lookup(ctx, a, memo.Refresh)
		now = h.now(e)
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
	// The entry's header values depend on it, on the request only through
	// the clock (in whole seconds of remaining lifetime) and a middleware's
	// Set-Cookie: a hit reuses those of the previous hit on the entry in
	// the same second, kept in h.hot.
	var tb [32]byte
	tag := e.AppendETag(tb[:0])
	public := h.public(w)
	hot := e.Cached && e.Hit && !e.Stale
	ttl := int64(-1) // no expiry
	if !e.FreshUntil.IsZero() {
		ttl = max(seconds(e.FreshUntil.Sub(now)), 0)
	}
	slot := h.hot.slot(tag)
	p := slot.Load()
	var id string
	if p != nil && p.id == string(tag) && p.sameEntry(e) {
		id = p.id
		if !hot || !p.same(ttl, public) {
			p = nil
		}
	} else {
		p, id = nil, string(tag)
	}
	ans, err := h.render(e, id)
	if err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}

	// Preconditions in the order of RFC 9110 section 13.2.2: If-Match,
	// else If-Unmodified-Since (only against a Last-Modified we send);
	// then If-None-Match, else If-Modified-Since (likewise).
	if im := fl.ifMatch; len(im) > 0 {
		strongTag := ans.etag
		if h.cfg.weakETag {
			strongTag = "" // a weak tag never matches strongly: only "*" does
		}
		if !matchETags(im, strongTag, true) {
			h.failPrecondition(w, r)
			return
		}
	} else if ius := fl.ifUnmodifiedSince; len(ius) > 0 && e.Cached {
		if t, ok := httpDate(ius); ok && e.StoredAt.Truncate(time.Second).After(t) {
			h.failPrecondition(w, r)
			return
		}
	}
	notModified := false
	if inm := fl.ifNoneMatch; len(inm) > 0 {
		notModified = matchETags(inm, ans.etag, false)
	} else if e.Cached {
		if ims, ok := modifiedSince(fl.ifModifiedSince, now); ok {
			notModified = !e.StoredAt.Truncate(time.Second).After(ims)
		}
	}

	if p == nil {
		v := h.values(e, &ans, id, ttl, now, public, reason)
		p = &v
		if hot {
			slot.Store(p)
		} else if notModified && !e.Hit && p.vals[vCacheStatus] != "" {
			// fn's answer was a 200 (or a Responder's status): RFC
			// 9211's fwd-status defaults to the status sent, which
			// would say that fn answered 304.
			p.vals[vCacheStatus] = withFwdStatus(p.vals[vCacheStatus], ans.status)
		}
	}

	hd := w.Header()
	if ans.header != nil {
		addHeader(hd, ans.header)
	}
	hd["Etag"] = p.field(vETag)
	if len(hd["Vary"]) > 0 {
		if vary, ok := h.varyFor(hd); ok {
			hd["Vary"] = []string{vary}
		}
	} else if h.vary != "" {
		hd["Vary"] = p.field(vVary)
	}
	hd["Cache-Control"] = p.field(vCacheControl)
	if h.cfg.cacheStatus {
		hd["Cache-Status"] = p.field(vCacheStatus)
	}
	if h.cfg.cacheHeader != "" {
		hd[h.cfg.cacheHeader] = p.field(vCache)
	}
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if e.Cached {
		hd["Last-Modified"] = p.field(vLastModified)
	}
	hd["Content-Type"] = p.field(vContentType)
	hd["Content-Length"] = p.field(vContentLength)
	w.WriteHeader(ans.status)
	if r.Method != http.MethodHead {
		w.Write(ans.body) //nolint:errcheck // the client went away; nothing to do
	}
}

// now is the time e's freshness is told at. For a fresh hit or a
// remembered error it is when memo judged the entry (no fn ran since), so
// that the lifetime sent is the one memo saw, without reading the clock;
// for anything else the clock's time: an answer computed now, one that
// never expires, and a stale one, which may be served after fn ran and
// failed (StaleIfError) and whose windows are counted to when it is sent.
func (h *handler[A, R]) now(e *memo.Entry) time.Time {
	if e != nil && e.Hit && !e.Stale && !e.CheckedAt.IsZero() {
		return e.CheckedAt
	}
	return h.cfg.now()
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

// public reports whether an answer from the cache may be stored by shared
// caches: under Public, unless a middleware has set a cookie on it.
func (h *handler[A, R]) public(w http.ResponseWriter) bool {
	return h.cfg.public && len(w.Header()["Set-Cookie"]) == 0
}

// scope is the first Cache-Control directive of an answer from the cache.
func scope(public bool) string {
	if public {
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

// serveBody writes e as a plain answer without caching headers: its body,
// Content-Type and Content-Length, and a Responder's status and fields.
func (h *handler[A, R]) serveBody(w http.ResponseWriter, r *http.Request, e *memo.Entry) {
	ans, err := h.render(e, e.ETag())
	if err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	if ans.header != nil {
		addHeader(hd, ans.header)
	}
	vals := make([]string, 2)
	hd["Content-Type"] = set(vals, 0, ans.ctype)
	hd["Content-Length"] = set(vals, 1, strconv.Itoa(len(ans.body)))
	w.WriteHeader(ans.status)
	if r.Method != http.MethodHead {
		w.Write(ans.body) //nolint:errcheck
	}
}

// varyFor returns the Vary value of an answer: the names a middleware has
// already put in hd followed by the handler's own, each once (compared
// case-insensitively). ok is false when there is none.
func (h *handler[A, R]) varyFor(hd http.Header) (v string, ok bool) {
	old := hd["Vary"]
	if len(old) == 0 {
		return h.vary, h.vary != ""
	}
	names := make([]string, 0, 8)
	add := func(list string) {
		for list != "" {
			var n string
			n, list, _ = strings.Cut(list, ",")
			if n = trimOWS(n); n == "" {
				continue
			}
			dup := false
			for _, m := range names {
				if strings.EqualFold(m, n) {
					dup = true
					break
				}
			}
			if !dup {
				names = append(names, n)
			}
		}
	}
	for _, o := range old {
		add(o)
	}
	add(h.vary)
	return strings.Join(names, ", "), len(names) > 0
}

// addHeader copies a Responder's fields into hd: Vary values are added to
// those already there, other fields replace them. The values are copied,
// so that nothing done to the response's header reaches the cached
// answer.
func addHeader(hd, from http.Header) {
	for k, v := range from {
		if k == "Vary" {
			hd[k] = append(hd[k][:len(hd[k]):len(hd[k])], v...)
			continue
		}
		hd[k] = append([]string(nil), v...)
	}
}
