package httpadapter

import (
	"fmt"
	"log/slog"
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
	public      bool
	perUser     bool
	cacheHeader string // canonical name, "" = off
	vary        []string
	errorStatus func(error) int
	errorLog    func(*http.Request, error)
	now         func() time.Time // the clock, time.Now; tests give memo's fake one
}

func defaultConfig() config {
	return config{cacheHeader: "X-Cache", errorLog: logError, now: time.Now}
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

// PerUser declares that the decode function keys the answer by the caller:
// it reads the Authorization header or a cookie and puts the user into the
// argument A. Only then are requests that carry Authorization or Cookie
// answered from the cache. Without PerUser such requests bypass memo's
// cache: fn runs, its answer is neither read from nor written to the cache,
// and the response says "Cache-Control: no-store" and
// "Cache-Status: memo; fwd=bypass; detail=credentials", so one user's
// answer can never be served to another through a key that ignores the
// user. Answers are always private under PerUser.
func PerUser() Option {
	return Option{func(c *config) { c.perUser = true }}
}

// CacheHeader renames the header that says "HIT", "MISS" or "BYPASS"
// (default "X-Cache", like fastapi-cache's X-FastAPI-Cache). CacheHeader("")
// turns it off; the standard Cache-Status header is sent regardless. A name
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
// and Cookie are always listed (see [PerUser]). Names are canonicalised and
// deduplicated; an invalid name panics.
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
	names := []string{"Authorization", "Cookie"}
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
