package httpadapter

import (
	"net/http"
	"reflect"
	"strconv"
)

// Ready decoders for [Handler]. Their errors for what the client sent are
// *[ParamError]s, short client-facing messages (the handler shows them in
// its 400 answers) that name the parameter but never echo its value; a
// decoder asked for a path wildcard its route lacks returns a *[RouteError]
// (a 500, logged). [Request] reads path wildcards, query parameters and
// headers into a struct; the ones below are its shortest forms.

// PathString returns a decoder yielding the path wildcard name of the
// request's route pattern (http.Request.PathValue), as in
// mux.Handle("GET /users/{name}", ...). An empty value (a "{name...}" that
// matched nothing) is a *[ParamError]. A route pattern without that
// wildcard, or no pattern and no value (a router that sets neither), is a
// *[RouteError]. The decoder is safe for concurrent use.
func PathString(name string) func(*http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		v, err := pathValue(r, name)
		if err != nil {
			return "", err
		}
		if v == "" {
			return "", &ParamError{In: "path", Name: name, Problem: "is missing"}
		}
		return v, nil
	}
}

// PathInt64 returns a decoder yielding the path wildcard name parsed as a
// base-10 int64 (an optional sign, digits only). A missing, non-numeric or
// out-of-range value is a *[ParamError]; a route without the wildcard is a
// *[RouteError], as for [PathString]. The decoder is safe for concurrent
// use.
func PathInt64(name string) func(*http.Request) (int64, error) {
	return func(r *http.Request) (int64, error) {
		v, err := pathValue(r, name)
		if err != nil {
			return 0, err
		}
		if v == "" {
			return 0, &ParamError{In: "path", Name: name, Problem: "is missing"}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, &ParamError{In: "path", Name: name, Problem: "is not a 64-bit integer"}
		}
		return n, nil
	}
}

// Query returns a decoder filling a struct T from the URL's query
// parameters alone: [Request] reading only the `query:"name"` tags (path
// and header tags are ignored). Fields may be of every type Request
// supports (strings, bools, integers, floats, times, durations, text
// unmarshalers, pointers to and slices of these); a scalar takes the first
// value of a repeated parameter, a slice every value. An absent parameter
// leaves its field zero (or its `default:"..."`; ",required" makes it an
// error). Untagged fields and parameters that no field names are ignored,
// so they do not split the cache key (?id=1&utm_source=x decodes like
// ?id=1). A malformed query string or a value that does not parse is a
// *[ParamError].
//
// Query panics if T is not a struct, or a tagged field is unexported, has
// an empty name, has an unsupported type or is promoted through an
// embedded pointer. The decoder is safe for concurrent use.
//
//	type Search struct {
//		Term  string   `query:"q"`
//		Page  int      `query:"page" default:"1"`
//		Tags  []string `query:"tag"`
//		Exact bool     `query:"exact"`
//	}
//	httpadapter.Handler(search, httpadapter.Query[Search]())
func Query[T any]() func(*http.Request) (T, error) {
	d := compile(reflect.TypeFor[T](), "Query", false)
	return func(r *http.Request) (T, error) {
		var out T
		err := d.decodeQuery(r.URL.RawQuery, reflect.ValueOf(&out).Elem())
		return out, err
	}
}
