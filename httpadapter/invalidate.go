package httpadapter

import (
	"context"
	"net/http"

	"github.com/gomemo/memo"
)

// ForgetHandler returns an http.Handler that invalidates one entry of f
// over HTTP: a DELETE or POST request, once allow accepts it, is decoded
// by decode into the argument whose answer f.Forget drops, so that the
// next GET computes afresh. Give it the decode function of the GET
// endpoint, so that both name the same entry:
//
//	mux.Handle("GET /users/{id}", httpadapter.Handler(users, httpadapter.PathInt64("id")))
//	mux.Handle("DELETE /users/{id}", httpadapter.ForgetHandler(users, httpadapter.PathInt64("id"), isAdmin))
//
// Answers, all with "Cache-Control: no-store":
//
//   - 204 No Content: the entry is forgotten (or there was none).
//   - 405 Method Not Allowed, with "Allow: DELETE, POST", for any other
//     method, before allow is asked.
//   - 403 Forbidden when allow returns false, before decode runs, so that a
//     refused client learns nothing about the argument.
//   - decode's errors as [Handler] answers them: 400 with the error's text
//     (a *[ParamError]), or the status the error carries (500 and logged for
//     a *[RouteError]).
//   - 500 when Forget fails (a backend's error), never with its text; the
//     error goes to [ErrorLog].
//
// Forget runs to its end even if the client goes away (the request's
// context loses its cancellation; f's memo.Timeout still bounds it).
// Error bodies follow the options as for Handler ([ErrorBody],
// [ErrorStatus], [ErrorLog]); options about caching headers do not apply.
//
// allow is the user's check, typically of an admin token; it must not
// trust a cookie alone, since a cross-site form can POST with the
// browser's cookies. To accept every request, pass a func that returns
// true. ForgetHandler panics if f, decode or allow is nil. The handler
// is safe for concurrent use.
func ForgetHandler[A, R any](f *memo.Func[A, R], decode func(*http.Request) (A, error), allow func(*http.Request) bool, opts ...Option) http.Handler {
	if f == nil {
		panic("httpadapter: ForgetHandler(nil, ...)")
	}
	if decode == nil {
		panic("httpadapter: ForgetHandler: decode is nil")
	}
	if allow == nil {
		panic("httpadapter: ForgetHandler: allow is nil (pass a func returning true to accept every request)")
	}
	h := Handler(f, decode, opts...).(*handler[A, R])
	return &forgetHandler[A, R]{h: h, allow: allow}
}

type forgetHandler[A, R any] struct {
	h     *handler[A, R] // for its function, decode and error answers
	allow func(*http.Request) bool
}

var (
	errForgetMethod = &StatusError{Status: http.StatusMethodNotAllowed, Detail: http.StatusText(http.StatusMethodNotAllowed)}
	errForbidden    = &StatusError{Status: http.StatusForbidden, Detail: http.StatusText(http.StatusForbidden)}
	allowForget     = []string{"DELETE, POST"}
)

func (fh *forgetHandler[A, R]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := fh.h
	if r.Method != http.MethodDelete && r.Method != http.MethodPost {
		w.Header()["Allow"] = allowForget
		h.fail(w, r, errForgetMethod, http.StatusMethodNotAllowed)
		return
	}
	if !fh.allow(r) {
		h.fail(w, r, errForbidden, http.StatusForbidden)
		return
	}
	a, err := h.decode(r)
	if err != nil {
		h.fail(w, r, err, http.StatusBadRequest)
		return
	}
	if err := h.f.Forget(context.WithoutCancel(r.Context()), a); err != nil {
		h.fail(w, r, err, http.StatusInternalServerError)
		return
	}
	w.Header()["Cache-Control"] = noStore
	w.WriteHeader(http.StatusNoContent)
}

var noStore = []string{"no-store"}
