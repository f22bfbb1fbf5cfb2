package httpadapter

import (
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Option configures a [Handler]. Options are values: when the same option is
// given twice the last one wins (except [Vary], whose names add up). Each
// constructor validates its argument and panics with an "httpadapter: ..."
// message on a programmer error.
type Option struct {
	apply func(*config)
}

// config is a handler's resolved configuration; it is read-only once the
// handler is built.
type config struct {
	public           bool
	perUser          bool
	ignoreCreds      bool
	ignoreDirectives bool
	weakETag         bool   // send W/"..."
	cacheHeader      string // canonical name, "" = off
	cacheStatus      bool
	contentType      string // "" = application/json, results as JSON
	vary             []string
	errorStatus      func(error) int
	errorLog         func(*http.Request, error)
	errorBody        func(http.ResponseWriter, *http.Request, *StatusError)
	now              func() time.Time // the clock, time.Now; tests give memo's fake one
}

func defaultConfig() config {
	return config{cacheHeader: "X-Cache", cacheStatus: true, errorLog: logError, errorBody: textError, now: time.Now}
}

// Public makes cached answers "Cache-Control: public, ..." so that shared
// caches (CDNs, reverse proxies) may store them too. The default is
// "private": only the requesting client may store an answer. Public cannot
// be combined with [PerUser] (Handler panics): an answer that depends on
// who asks must never sit in a shared cache. If a middleware in front of the
// handler has already put a Set-Cookie header on the response when the
// handler writes it, that answer is sent as private all the same.
func Public() Option {
	return Option{func(c *config) { c.public = true }}
}

// IgnoreCredentials declares that the answer does not depend on who asks:
// requests with Authorization or Cookie are answered from the cache like
// any other, and those two names are not added to Vary (only the names
// given to [Vary], and those a middleware set, are sent). Use it when
// credentials are there for another reason than the answer (an analytics
// cookie, a session that only rate limits), or when decode puts the user
// or tenant into the argument and no HTTP cache sits between the handler
// and the clients (with [Public], a shared cache would then hold one
// answer per URL for every caller: add [Vary] names, or use [PerUser]).
// It combines with [Public]; with [PerUser], Handler panics.
func IgnoreCredentials() Option {
	return Option{func(c *config) { c.ignoreCreds = true }}
}

// IgnoreRequestDirectives makes the handler ignore the request's
// Cache-Control (no-cache, no-store, max-age, min-fresh) and Pragma, as
// nginx and Varnish do by default: every GET and HEAD is answered from
// memo's cache while the entry lasts, whatever the client asks. By default
// the handler honours them (see [Handler]); in both cases concurrent
// requests that compute share one run of fn.
func IgnoreRequestDirectives() Option {
	return Option{func(c *config) { c.ignoreDirectives = true }}
}

// CacheStatus turns the RFC 9211 Cache-Status header on (the default) or
// off, on every answer. The HIT/MISS header is [CacheHeader]'s.
func CacheStatus(on bool) Option {
	return Option{func(c *config) { c.cacheStatus = on }}
}

// ContentType sets the Content-Type of answers (default
// "application/json") and makes a result of type string or []byte (or a
// type defined on one) the body as is: an HTML fragment, a CSV, JSON text
// made elsewhere. A result of another type is still its JSON. The ETag is
// the hash of the result's JSON encoding (for a string, the quoted and
// escaped text), the same in every process; conditional requests, HEAD
// and every caching header work as for JSON answers. The handler decodes
// a stored string or []byte at most once per entry and keeps the bodies
// of up to 64 entries (one per slot) to serve them; a string with no
// character that JSON escapes is served straight from the entry. An
// invalid media type panics.
func ContentType(ct string) Option {
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		panic(fmt.Sprintf("httpadapter: ContentType(%q): %v", ct, err))
	}
	return Option{func(c *config) { c.contentType = ct }}
}

// WeakETag sends the answer's entity tag in its weak form, W/"...", for
// handlers behind compression middleware (gzhttp, chi's Compress): one
// strong tag must never name both the identity and the gzip body, while a
// weak one may (RFC 9110 section 8.8.1), and such middleware passes a weak
// tag through untouched, as nginx's gzip weakens strong ones.
// If-None-Match still matches it (a weak comparison), so revalidation keeps
// its 304s; If-Match, whose comparison is strong, then matches only "*".
// See docs/http.md, "Behind gzip".
func WeakETag() Option {
	return Option{func(c *config) { c.weakETag = true }}
}

// ErrorBody sets how error answers are written: fn receives the status,
// the message for the client and the error (a [StatusError] built by the
// handler, e.Err being the error it answers) and must write the status
// with w.WriteHeader(e.Status) and a body. The handler has set the
// caching headers first (Cache-Control: no-store, or those of a
// remembered error). It is called for decode errors, fn's errors,
// remembered errors and 412s. e.Detail is safe to send: an HTTPDetail()
// of the error (see [StatusError]), the text of a 4xx decode error, or
// the status text; never the text of another error of fn. The default
// writes "<status text>" or "<status text>: <detail>" as text/plain;
// [JSONError] writes FastAPI's {"detail": ...}. fn must be safe for
// concurrent use.
func ErrorBody(fn func(w http.ResponseWriter, r *http.Request, e *StatusError)) Option {
	if fn == nil {
		panic("httpadapter: ErrorBody(nil)")
	}
	return Option{func(c *config) { c.errorBody = fn }}
}

// PerUser declares that the decode function keys the answer by the caller:
// it reads the Authorization header or a cookie and puts the user into the
// argument A. Then requests that carry Authorization or Cookie are
// answered from the cache (as they are under [IgnoreCredentials], which
// says instead that the answer does not depend on the caller). Without
// either, such requests bypass memo's cache: fn runs, its answer is
// neither read from nor written to the cache, and the response says
// "Cache-Control: no-store" and "Cache-Status: memo; fwd=bypass;
// detail=credentials", so one user's answer can never be served to
// another through a key that ignores the user; concurrent such requests
// share a run of fn only when they carry the same Authorization and
// Cookie. Answers are always private under PerUser, and Vary lists
// Authorization and Cookie. fn must not read the user from its context
// (the request's): decode must put it into A, so into the key.
func PerUser() Option {
	return Option{func(c *config) { c.perUser = true }}
}

// CacheHeader renames the header that says "HIT", "MISS" or "BYPASS"
// (default "X-Cache", like fastapi-cache's X-FastAPI-Cache). CacheHeader("")
// turns it off; the standard Cache-Status header is [CacheStatus]'s. A name
// that is not a valid header field name panics.
func CacheHeader(name string) Option {
	if name != "" && !isToken(name) {
		panic(fmt.Sprintf("httpadapter: CacheHeader(%q): not a valid header name", name))
	}
	name = http.CanonicalHeaderKey(name)
	return Option{func(c *config) { c.cacheHeader = name }}
}

// Vary adds request header names to the Vary header of cached answers. Name
// every header that the decode function reads (Accept-Language, a tenant
// header, ...): HTTP caches then keep one answer per value. Authorization
// and Cookie are always listed (see [PerUser]), unless [IgnoreCredentials]
// is given. Names a middleware set on the response before the handler
// writes it are kept, the handler's added after them. Names are
// canonicalised and deduplicated; an invalid name panics.
func Vary(names ...string) Option {
	canon := make([]string, len(names))
	for i, n := range names {
		if !isToken(n) {
			panic(fmt.Sprintf("httpadapter: Vary(%q): not a valid header name", n))
		}
		canon[i] = http.CanonicalHeaderKey(n)
	}
	return Option{func(c *config) { c.vary = append(c.vary, canon...) }}
}

// ErrorStatus sets how errors map to HTTP statuses. fn receives every error
// of decode and of the memoized function and returns a status from 400 to
// 599, or 0 (or any other value) to leave the error to the default rules:
// an error in the chain implementing HTTPStatus() int, then 400 for decode
// errors and 500 for fn errors (404 for a not-found that memo remembers,
// see [Handler]). fn must be safe for concurrent use.
func ErrorStatus(fn func(error) int) Option {
	if fn == nil {
		panic("httpadapter: ErrorStatus(nil)")
	}
	return Option{func(c *config) { c.errorStatus = fn }}
}

// ErrorLog sets the hook called for every answer with a 5xx status, with the
// request and the error that caused it (the error text is never sent to the
// client). It is not called for 4xx answers nor when the client went away
// (the request's context was cancelled). fn runs on the request's goroutine
// and must be safe for concurrent use. The default logs at slog.LevelError
// on slog.Default().
func ErrorLog(fn func(r *http.Request, err error)) Option {
	if fn == nil {
		panic("httpadapter: ErrorLog(nil)")
	}
	return Option{func(c *config) { c.errorLog = fn }}
}

func logError(r *http.Request, err error) {
	slog.Default().LogAttrs(r.Context(), slog.LevelError, "httpadapter: request failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
}

// varyValue builds the Vary header of cached answers.
func (c *config) varyValue() string {
	var names []string
	if !c.ignoreCreds {
		names = []string{"Authorization", "Cookie"}
	}
	for _, n := range c.vary {
		dup := false
		for _, m := range names {
			if m == n {
				dup = true
				break
			}
		}
		if !dup {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// isToken reports whether s is an RFC 9110 token (a valid field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
