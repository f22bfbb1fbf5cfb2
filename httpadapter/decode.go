package httpadapter

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
)

// Ready decoders for [Handler]. Their errors are short, client-facing
// messages (the handler shows them in its 400 answers) that name the
// parameter but never echo its value.

// PathString returns a decoder yielding the path wildcard name of the
// request's route pattern (http.Request.PathValue), as in
// mux.Handle("GET /users/{name}", ...). An empty value is an error, which
// is also what a pattern without that wildcard yields. The decoder is safe
// for concurrent use.
func PathString(name string) func(*http.Request) (string, error) {
	return func(r *http.Request) (string, error) {
		v := r.PathValue(name)
		if v == "" {
			return "", fmt.Errorf("path parameter %q is missing", name)
		}
		return v, nil
	}
}

// PathInt64 returns a decoder yielding the path wildcard name parsed as a
// base-10 int64 (an optional sign, digits only). A missing, non-numeric or
// out-of-range value is an error. The decoder is safe for concurrent use.
func PathInt64(name string) func(*http.Request) (int64, error) {
	return func(r *http.Request) (int64, error) {
		v := r.PathValue(name)
		if v == "" {
			return 0, fmt.Errorf("path parameter %q is missing", name)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("path parameter %q is not a 64-bit integer", name)
		}
		return n, nil
	}
}

// Query returns a decoder filling a struct T from the URL's query
// parameters. Each field tagged `query:"name"` takes the first value of
// parameter name; fields may be strings, bools (strconv.ParseBool) and
// signed or unsigned integers of any size (base 10, range-checked). An
// absent parameter leaves its field zero. Untagged fields and parameters
// that no field names are ignored, so they do not split the cache key
// (?id=1&utm_source=x decodes like ?id=1). A malformed query string or a
// value that does not parse is an error.
//
// Query panics if T is not a struct, or a tagged field is unexported, has an
// empty name, has another type or is promoted through an embedded pointer.
// The decoder is safe for concurrent use.
//
//	type Search struct {
//		Term  string `query:"q"`
//		Page  int    `query:"page"`
//		Exact bool   `query:"exact"`
//	}
//	httpadapter.Handler(search, httpadapter.Query[Search]())
func Query[T any]() func(*http.Request) (T, error) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("httpadapter: Query[%v]: not a struct", t))
	}
	type field struct {
		index []int
		name  string
		kind  reflect.Kind
	}
	var fields []field
	for _, sf := range reflect.VisibleFields(t) {
		name, ok := sf.Tag.Lookup("query")
		if !ok || name == "-" {
			continue
		}
		if !sf.IsExported() {
			panic(fmt.Sprintf("httpadapter: Query[%v]: field %s is tagged but not exported", t, sf.Name))
		}
		if name == "" {
			panic(fmt.Sprintf("httpadapter: Query[%v]: field %s has an empty query tag", t, sf.Name))
		}
		for i := 1; i < len(sf.Index); i++ {
			if t.FieldByIndex(sf.Index[:i]).Type.Kind() == reflect.Pointer {
				panic(fmt.Sprintf("httpadapter: Query[%v]: field %s is promoted through an embedded pointer", t, sf.Name))
			}
		}
		switch k := sf.Type.Kind(); k {
		case reflect.String, reflect.Bool,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			fields = append(fields, field{sf.Index, name, k})
		default:
			panic(fmt.Sprintf("httpadapter: Query[%v]: field %s has type %v; want a string, bool or integer", t, sf.Name, sf.Type))
		}
	}
	return func(r *http.Request) (T, error) {
		var out T
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return out, errors.New("malformed query string")
		}
		v := reflect.ValueOf(&out).Elem()
		for _, f := range fields {
			vals, ok := q[f.name]
			if !ok || len(vals) == 0 {
				continue
			}
			s := vals[0]
			fv := v.FieldByIndex(f.index)
			switch f.kind {
			case reflect.String:
				fv.SetString(s)
			case reflect.Bool:
				b, err := strconv.ParseBool(s)
				if err != nil {
					return out, fmt.Errorf("query parameter %q is not a boolean", f.name)
				}
				fv.SetBool(b)
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				n, err := strconv.ParseInt(s, 10, fv.Type().Bits())
				if err != nil {
					return out, fmt.Errorf("query parameter %q is not an integer in range", f.name)
				}
				fv.SetInt(n)
			default: // unsigned
				n, err := strconv.ParseUint(s, 10, fv.Type().Bits())
				if err != nil {
					return out, fmt.Errorf("query parameter %q is not a non-negative integer in range", f.name)
				}
				fv.SetUint(n)
			}
		}
		return out, nil
	}
}
