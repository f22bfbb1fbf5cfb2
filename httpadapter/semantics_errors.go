package httpadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gomemo/memo"
)

// StatusError is an error with an HTTP status and a message fit for the
// client, like FastAPI's HTTPException(status_code, detail). Return one
// from fn (or from decode) to answer with that status and detail: the
// default error body is "<status text>: <Detail>", and [JSONError] writes
// {"detail": Detail}. Err, when set, is the cause: it goes to [ErrorLog]
// for a 5xx and is never sent. Any error type can do the same by having
// methods HTTPStatus() int and HTTPDetail() string.
//
// A StatusError can be a [memo.NegativeCache] sentinel, so that a
// remembered not-found keeps its status and detail:
//
//	var ErrNoUser = httpadapter.Error(http.StatusNotFound, "no such user")
//	users := memo.New(fetchUser, memo.NegativeCache(time.Minute, ErrNoUser))
//
// The handler also passes a StatusError to an [ErrorBody] renderer, built
// from whatever error it answers.
type StatusError struct {
	Status int    // 400–599
	Detail string // the message for the client
	Err    error  // the cause, never sent; may be nil
}

// Error returns "status: detail", and the cause's text after it.
func (e *StatusError) Error() string {
	s := strconv.Itoa(e.Status) + ": " + e.Detail
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// HTTPStatus returns the status.
func (e *StatusError) HTTPStatus() int { return e.Status }

// HTTPDetail returns the message for the client.
func (e *StatusError) HTTPDetail() string { return e.Detail }

// Error returns a *[StatusError] with the status and detail, which fn can
// return to answer with them. It panics if status is not from 400 to 599.
func Error(status int, detail string) error {
	if !isErrorStatus(status) {
		panic(fmt.Sprintf("httpadapter: Error(%d, ...): status must be from 400 to 599", status))
	}
	return &StatusError{Status: status, Detail: detail}
}

// JSONError is an [ErrorBody] renderer in FastAPI's form: the status with
// the body {"detail": "<detail>"} as application/json, the detail being
// the error's client message or the status text.
//
//	httpadapter.Handler(f, decode, httpadapter.ErrorBody(httpadapter.JSONError))
func JSONError(w http.ResponseWriter, r *http.Request, e *StatusError) {
	b, _ := json.Marshal(struct {
		Detail string `json:"detail"`
	}{e.Detail})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		w.Write(append(b, '\n')) //nolint:errcheck
	}
}

// textError is the default renderer: the status text, and ": detail" when
// the error has a message for the client, as text/plain (http.Error).
func textError(w http.ResponseWriter, r *http.Request, e *StatusError) {
	msg := http.StatusText(e.Status)
	if msg == "" {
		msg = "Error"
	}
	if e.Detail != "" && e.Detail != msg {
		msg += ": " + e.Detail
	}
	http.Error(w, msg, e.Status)
}

// statusCoder is what an error implements to choose its HTTP status.
type statusCoder interface{ HTTPStatus() int }

// detailer is what an error implements to carry a message for the client.
type detailer interface{ HTTPDetail() string }

// status maps an error to its HTTP status: ErrorStatus, then HTTPStatus()
// in the error's chain; 0 when neither gives one from 400 to 599.
func (h *handler[A, R]) status(err error) int {
	var re *RouteError
	if errors.As(err, &re) {
		// A programmer's error: no ErrorStatus makes it the client's.
		return http.StatusInternalServerError
	}
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

// statusError builds what the renderer gets: the status, the client
// message (an HTTPDetail in err's chain; for a 4xx answer to a decode
// error, the error's text; else the status text) and err as the cause.
func statusError(status int, err error, decoding bool) *StatusError {
	se := &StatusError{Status: status, Err: err}
	var d detailer
	switch {
	case errors.As(err, &d):
		se.Detail = clientText(d.HTTPDetail())
	case decoding && status < 500:
		se.Detail = clientText(err.Error())
	}
	if se.Detail == "" {
		se.Detail = http.StatusText(status)
		if se.Detail == "" {
			se.Detail = "Error"
		}
	}
	return se
}

// fail answers an error: status from ErrorStatus, then HTTPStatus(), then
// def, rendered by the ErrorBody renderer (by default the status text,
// plus the client message: an HTTPDetail, or the text of a 4xx decode
// error). 5xx are logged, except when the client left.
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
	if status >= 500 && !gone {
		h.cfg.errorLog(r, err)
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	delete(hd, "Etag")
	delete(hd, "Last-Modified")
	h.cfg.errorBody(w, r, statusError(status, err, def == http.StatusBadRequest))
}

// errPrecondition is the error of a 412 answer.
var errPrecondition = errors.New("httpadapter: precondition failed")

// failPrecondition answers 412 Precondition Failed: an If-Match or
// If-Unmodified-Since that the answer does not satisfy. Not logged.
func (h *handler[A, R]) failPrecondition(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	delete(hd, "Etag")
	delete(hd, "Last-Modified")
	h.cfg.errorBody(w, r, statusError(http.StatusPreconditionFailed, errPrecondition, false))
}

// failRemembered answers an error of fn that memo remembered and e, the
// entry that holds it: a not-found of NegativeCache, or another error of
// CacheErrors (which matches memo.ErrCached). The status comes from the
// error as in fail, by default 404 for a not-found (memo keeps only its
// sentinel and text, so a status that only fn's own error carried is
// lost) and 500 for another error. It is an answer from the cache:
// Cache-Status says hit, and max-age is its remaining lifetime, with no
// Age, so that no cache keeps it longer than memo does. The body is the
// renderer's; 5xx are logged.
func (h *handler[A, R]) failRemembered(w http.ResponseWriter, r *http.Request, e *memo.Entry, err error, now time.Time) {
	status := h.status(err)
	if status == 0 {
		status = http.StatusNotFound
		if errors.Is(err, memo.ErrCached) {
			status = http.StatusInternalServerError
		}
	}
	if status >= 500 {
		h.cfg.errorLog(r, err)
	}
	hd := w.Header()
	delete(hd, "Etag")
	delete(hd, "Last-Modified")
	cs := csHit
	if e.FreshUntil.IsZero() {
		hd.Set("Cache-Control", scope(h.public(w))+", no-cache")
	} else {
		ttl := strconv.FormatInt(max(seconds(e.FreshUntil.Sub(now)), 0), 10)
		hd.Set("Cache-Control", scope(h.public(w))+", max-age="+ttl)
		cs += "; ttl=" + ttl
	}
	if h.cfg.cacheStatus {
		hd.Set("Cache-Status", cs)
	}
	if vary, ok := h.varyFor(hd); ok {
		hd.Set("Vary", vary)
	}
	if h.cfg.cacheHeader != "" {
		hd.Set(h.cfg.cacheHeader, "HIT")
	}
	h.cfg.errorBody(w, r, statusError(status, err, false))
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
