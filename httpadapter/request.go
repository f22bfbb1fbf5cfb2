package httpadapter

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ParamError is the error of a decoder of this package for a request the
// client got wrong: a parameter that is missing or does not parse, or a
// malformed query string. Its text is fit for the client and names the
// parameter, never its value ([Handler] answers it 400 with that text).
// Map it to another status with [ErrorStatus], e.g. 422 as FastAPI does:
//
//	httpadapter.ErrorStatus(func(err error) int {
//		var pe *httpadapter.ParamError
//		if errors.As(err, &pe) {
//			return http.StatusUnprocessableEntity
//		}
//		return 0
//	})
type ParamError struct {
	// In is where the parameter is: "path", "query" or "header".
	In string
	// Name is the path wildcard, query parameter or header name; empty when
	// the error concerns the whole query string.
	Name string
	// Problem says what is wrong, e.g. "is missing" or "is not an integer
	// in range"; with an empty Name, the whole message.
	Problem string
}

func (e *ParamError) Error() string {
	switch {
	case e.Name == "":
		return e.Problem
	case e.In == "header":
		return fmt.Sprintf("header %q %s", e.Name, e.Problem)
	default:
		return fmt.Sprintf("%s parameter %q %s", e.In, e.Name, e.Problem)
	}
}

// RouteError is the error of a decoder of this package asked for a path
// wildcard that the request's route does not have: a programmer's error,
// not the client's. It is detected on the first request (a decoder does not
// see the route before then) and on every request after it: the route
// pattern, as ServeMux (Go 1.23+) and chi record it in http.Request.Pattern,
// lacks the wildcard, or the wildcard has no value and the request has no
// pattern at all (a router that sets neither, such as gin or echo without
// the shim in docs/http.md). Its HTTPStatus is 500, so [Handler] answers
// "500 Internal Server Error" without its text and passes it to [ErrorLog].
type RouteError struct {
	// Wildcard is the name the decoder asked for.
	Wildcard string
	// Pattern is the request's route pattern, empty when the router set
	// none.
	Pattern string
}

func (e *RouteError) Error() string {
	if e.Pattern == "" {
		return fmt.Sprintf("httpadapter: path wildcard %q has no value and the request has no route pattern: the router set no path values (see docs/http.md for gin and echo)", e.Wildcard)
	}
	return fmt.Sprintf("httpadapter: route pattern %q has no wildcard %q", e.Pattern, e.Wildcard)
}

// HTTPStatus returns 500: the route and the decoder do not match.
func (e *RouteError) HTTPStatus() int { return http.StatusInternalServerError }

// pathValue returns the path wildcard name of r. An empty value is absent
// when the route has the wildcard (a "{name...}" that matched nothing), and
// a *RouteError when it does not or when the router recorded no pattern.
func pathValue(r *http.Request, name string) (string, error) {
	if v := r.PathValue(name); v != "" {
		return v, nil
	}
	if hasWildcard(r.Pattern, name) {
		return "", nil
	}
	return "", &RouteError{Wildcard: name, Pattern: r.Pattern}
}

// hasWildcard reports whether pattern has a wildcard called name, in the
// syntax of ServeMux ("{name}", "{name...}") or chi ("{name}",
// "{name:regexp}", "*" for name "*").
func hasWildcard(pattern, name string) bool {
	if pattern == "" {
		return false
	}
	if name == "*" {
		return strings.Contains(pattern, "*")
	}
	for i := 0; ; {
		j := strings.Index(pattern[i:], name)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(name)
		if j > 0 && pattern[j-1] == '{' && end < len(pattern) {
			switch pattern[end] {
			case '}', ':':
				return true
			case '.':
				if strings.HasPrefix(pattern[end:], "...}") {
					return true
				}
			}
		}
		i = j + 1
	}
}

// NoArg returns a decoder for an endpoint whose function takes no argument
// (its A is struct{}): every request maps to the one cache entry, whatever
// its path, query or headers. It never fails.
//
//	stats := memo.New(func(ctx context.Context, _ struct{}) (Stats, error) { ... })
//	mux.Handle("GET /stats", httpadapter.Handler(stats, httpadapter.NoArg()))
func NoArg() func(*http.Request) (struct{}, error) {
	return noArg
}

func noArg(*http.Request) (struct{}, error) { return struct{}{}, nil }

// Request returns a decoder that fills a struct T from the request's path
// wildcards, query parameters and headers, by field tags:
//
//	type ItemQuery struct {
//		ID     int64     `path:"id"`                 // r.PathValue("id")
//		Fields []string  `query:"field"`             // ?field=a&field=b
//		Page   int       `query:"page" default:"1"`  // 1 when absent
//		Since  time.Time `query:"since"`             // RFC 3339
//		Limit  *uint     `query:"limit"`             // nil when absent
//		Q      string    `query:"q,required"`        // 400 when absent
//		Tenant string    `header:"X-Tenant"`
//	}
//	mux.Handle("GET /items/{id}", httpadapter.Handler(items, httpadapter.Request[ItemQuery]()))
//
// A field may be a string, bool, signed or unsigned integer (base 10,
// range-checked), float (finite), time.Time (RFC 3339; a space where the
// offset's '+' was, as an unescaped '+' in a query becomes, is read as
// '+'), time.Duration (time.ParseDuration: "90s", "1h30m"), a type whose
// pointer implements encoding.TextUnmarshaler, a pointer to one of these
// (nil when absent), or a slice of one of these (not of pointers; not
// []byte, which would be a list of numbers: use a string). A scalar
// takes the first value of a repeated query parameter or header; a slice
// takes every value in order: each repeated query parameter, and each
// element of each line of a header, split at commas as an HTTP list (empty
// elements dropped). Path fields cannot be slices.
//
// An absent parameter leaves its field zero, or sets the value of its
// `default:"..."` tag (not on pointers and slices), or, with ",required"
// after the name, is an error. Present values must parse, empty ones
// included (?page= is an error for an int). A path wildcard is absent when
// it matched nothing ("{rest...}" at the end of the path). Untagged fields
// and parameters no field names are ignored, so they do not split the
// cache key (?id=1&utm_source=x decodes like ?id=1). List every header
// that a field reads in [Vary], so that HTTP caches keep one answer per
// value. Client errors are *[ParamError]
// (answered 400), with a text that names the parameter and never echoes
// its value; the query string is read as url.ParseQuery reads it, and is
// an error where ParseQuery gives one. A path tag naming a wildcard that
// the route does not have is a *[RouteError] (answered 500 and logged).
//
// The struct is examined once, when Request is called; Request panics if T
// is not a struct, or a tagged field is unexported, has several tags, an
// empty name, an unsupported type or a default that does not parse, or is
// promoted through an embedded pointer; two fields with the same source
// and name also panic. The decoder is safe for concurrent use.
func Request[T any]() func(*http.Request) (T, error) {
	d := compile(reflect.TypeFor[T](), "Request", true)
	return func(r *http.Request) (T, error) {
		var out T
		err := d.decode(r, reflect.ValueOf(&out).Elem())
		return out, err
	}
}

// source is where a field's value comes from.
type source uint8

const (
	srcPath source = iota
	srcQuery
	srcHeader
)

var sourceTag = [...]string{srcPath: "path", srcQuery: "query", srcHeader: "header"}

// kind is how a field's (or a slice element's) text is parsed.
type kind uint8

const (
	kString kind = iota
	kBool
	kInt
	kUint
	kFloat
	kTime
	kDuration
	kText
)

var problems = [...]string{
	kBool:     "is not a boolean",
	kInt:      "is not an integer in range",
	kUint:     "is not a non-negative integer in range",
	kFloat:    "is not a finite number",
	kTime:     "is not an RFC 3339 time",
	kDuration: "is not a duration",
	kText:     "is not valid",
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	durationType      = reflect.TypeFor[time.Duration]()
	textUnmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// field is one tagged field of the struct, resolved at construction.
type field struct {
	index    []int
	src      source
	name     string       // wildcard, parameter or canonical header name
	kind     kind         // of the value (slice element, pointee)
	elem     reflect.Type // type of the value (slice element, pointee)
	slice    bool
	ptr      bool
	required bool
	def      reflect.Value // the parsed default, or the zero Value
	defText  string        // the default's text, parsed anew for a kText
}

// decoder fills a struct from a request by its resolved fields.
type decoder struct {
	fields []field
	query  []int // indexes into fields of the query fields
}

// compile resolves t's tagged fields. who names the constructor in panics;
// all reads path and header tags too (Query reads only query tags).
func compile(t reflect.Type, who string, all bool) *decoder {
	fail := func(format string, args ...any) {
		panic(fmt.Sprintf("httpadapter: %s[%v]: ", who, t) + fmt.Sprintf(format, args...))
	}
	if t.Kind() != reflect.Struct {
		fail("not a struct")
	}
	d := &decoder{}
	seen := map[[2]string]string{}
	for _, sf := range reflect.VisibleFields(t) {
		var f field
		var tag string
		n := 0
		for src, key := range sourceTag {
			if !all && source(src) != srcQuery {
				continue
			}
			if v, ok := sf.Tag.Lookup(key); ok && v != "-" {
				f.src, tag = source(src), v
				n++
			}
		}
		if n == 0 {
			continue
		}
		if n > 1 {
			fail("field %s has more than one of the path, query and header tags", sf.Name)
		}
		if !sf.IsExported() {
			fail("field %s is tagged but not exported", sf.Name)
		}
		for i := 1; i < len(sf.Index); i++ {
			if t.FieldByIndex(sf.Index[:i]).Type.Kind() == reflect.Pointer {
				fail("field %s is promoted through an embedded pointer", sf.Name)
			}
		}
		name, opt, _ := strings.Cut(tag, ",")
		switch opt {
		case "":
		case "required":
			f.required = true
		default:
			fail("field %s: unknown tag option %q; want \"required\"", sf.Name, opt)
		}
		if name == "" {
			fail("field %s has an empty %s tag", sf.Name, sourceTag[f.src])
		}
		if f.src == srcHeader {
			if !isToken(name) {
				fail("field %s: %q is not a valid header name", sf.Name, name)
			}
			name = http.CanonicalHeaderKey(name)
		}
		if f.src == srcPath && f.required {
			fail("field %s: path wildcards are always required; drop \",required\"", sf.Name)
		}
		f.name, f.index = name, sf.Index
		k := [2]string{sourceTag[f.src], name}
		if other, dup := seen[k]; dup {
			fail("fields %s and %s both read %s %q", other, sf.Name, k[0], name)
		}
		seen[k] = sf.Name

		ft := sf.Type
		switch {
		case ft.Kind() == reflect.Pointer && !isText(ft):
			f.ptr, ft = true, ft.Elem()
		case ft.Kind() == reflect.Slice && !isText(ft):
			f.slice, ft = true, ft.Elem()
		}
		kd, ok := kindOf(ft)
		if !ok {
			fail("field %s has type %v; want a string, bool, integer, float, time.Time, time.Duration, encoding.TextUnmarshaler, or a pointer to or slice of one", sf.Name, sf.Type)
		}
		if f.slice && kd == kUint && ft.Kind() == reflect.Uint8 {
			fail("field %s has type %v: a list of bytes is ambiguous; want a string", sf.Name, sf.Type)
		}
		if f.slice && f.src == srcPath {
			fail("field %s: a path wildcard has one value; want a scalar type, not %v", sf.Name, sf.Type)
		}
		f.kind, f.elem = kd, ft
		if dv, ok := sf.Tag.Lookup("default"); ok {
			if f.ptr || f.slice {
				fail("field %s: a default is not allowed on a %v", sf.Name, sf.Type)
			}
			if f.required {
				fail("field %s: a required field cannot have a default", sf.Name)
			}
			v := reflect.New(ft).Elem()
			if !parseValue(v, kd, dv) {
				fail("field %s: default %q %s", sf.Name, dv, problems[kd])
			}
			f.def, f.defText = v, dv
		}
		if f.src == srcQuery {
			d.query = append(d.query, len(d.fields))
		}
		d.fields = append(d.fields, f)
	}
	return d
}

// isText reports whether *t implements encoding.TextUnmarshaler, t being
// no pointer itself.
func isText(t reflect.Type) bool {
	return t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalType)
}

// kindOf returns how values of t are parsed; false if t is not supported.
func kindOf(t reflect.Type) (kind, bool) {
	switch {
	case t == timeType:
		return kTime, true
	case t == durationType:
		return kDuration, true
	case isText(t):
		return kText, true
	}
	switch t.Kind() {
	case reflect.String:
		return kString, true
	case reflect.Bool:
		return kBool, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kInt, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return kUint, true
	case reflect.Float32, reflect.Float64:
		return kFloat, true
	}
	return 0, false
}

// parseValue parses s into v (settable, of the field's value type) by k,
// and reports whether s was valid.
func parseValue(v reflect.Value, k kind, s string) bool {
	switch k {
	case kString:
		v.SetString(s)
	case kBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false
		}
		v.SetBool(b)
	case kInt:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return false
		}
		v.SetInt(n)
	case kUint:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return false
		}
		v.SetUint(n)
	case kFloat:
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
		v.SetFloat(x)
	case kTime:
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			// An unescaped '+' in a query string arrives as a space.
			i := len(s) - 6
			if i < 0 || s[i] != ' ' {
				return false
			}
			if t, err = time.Parse(time.RFC3339, s[:i]+"+"+s[i+1:]); err != nil {
				return false
			}
		}
		*v.Addr().Interface().(*time.Time) = t
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return false
		}
		v.SetInt(int64(d))
	case kText:
		if v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)) != nil {
			return false
		}
	}
	return true
}

// set stores s into the field f of out (for a slice, appends it).
func (f *field) set(out reflect.Value, s string) error {
	fv := out.FieldByIndex(f.index)
	var v reflect.Value
	switch {
	case f.slice:
		n := fv.Len()
		if n == fv.Cap() {
			fv.Grow(max(n, 4)) // one allocation for up to 4 values
		}
		fv.SetLen(n + 1)
		v = fv.Index(n)
	case f.ptr:
		p := reflect.New(f.elem)
		fv.Set(p)
		v = p.Elem()
	default:
		v = fv
	}
	if !parseValue(v, f.kind, s) {
		return &ParamError{In: sourceTag[f.src], Name: f.name, Problem: problems[f.kind]}
	}
	return nil
}

// absent handles a field whose parameter the request lacks.
func (f *field) absent(out reflect.Value) error {
	if f.required {
		return &ParamError{In: sourceTag[f.src], Name: f.name, Problem: "is missing"}
	}
	switch {
	case !f.def.IsValid():
	case f.kind == kText:
		// A text unmarshaler may hold references: give each request its
		// own value.
		parseValue(out.FieldByIndex(f.index), kText, f.defText)
	default:
		out.FieldByIndex(f.index).Set(f.def)
	}
	return nil
}

// maxQueryParams is url.ParseQuery's limit on the number of parameters.
const maxQueryParams = 10000

func (d *decoder) decode(r *http.Request, out reflect.Value) error {
	if len(d.query) > 0 {
		if err := d.decodeQuery(r.URL.RawQuery, out); err != nil {
			return err
		}
	}
	for i := range d.fields {
		f := &d.fields[i]
		switch f.src {
		case srcPath:
			v, err := pathValue(r, f.name)
			if err != nil {
				return err
			}
			if v == "" {
				err = f.absent(out)
			} else {
				err = f.set(out, v)
			}
			if err != nil {
				return err
			}
		case srcHeader:
			lines := r.Header[f.name]
			if len(lines) == 0 {
				if err := f.absent(out); err != nil {
					return err
				}
				continue
			}
			if !f.slice {
				if err := f.set(out, lines[0]); err != nil {
					return err
				}
				continue
			}
			n := 0
			for _, line := range lines {
				for elem := range strings.SplitSeq(line, ",") {
					if elem = strings.Trim(elem, " \t"); elem == "" {
						continue
					}
					if err := f.set(out, elem); err != nil {
						return err
					}
					n++
				}
			}
			if n == 0 {
				if err := f.absent(out); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// decodeQuery fills the query fields from raw, read as url.ParseQuery reads
// it (the same pairs, the same errors) without building its map: one pass
// over the bytes splits and checks each pair, and only the keys and values
// that need it, of the fields only, are unescaped.
func (d *decoder) decodeQuery(raw string, out reflect.Value) error {
	var seenBuf [16]bool
	var seen []bool
	if len(d.query) > len(seenBuf) {
		seen = make([]bool, len(d.query))
	} else {
		seen = seenBuf[:len(d.query)]
	}
	var firstErr error // a field's bad value
	malformed := false
	pairs := 1
	for raw != "" {
		p, bad := nextPair(raw)
		raw = raw[p.end:]
		if p.amp {
			pairs++
		}
		if bad {
			malformed = true
			break
		}
		if firstErr != nil || p.key == "" {
			continue // only ParseQuery's errors matter now
		}
		key := p.key
		if p.keyEsc {
			key = queryUnescape(key)
		}
		for j, fi := range d.query {
			f := &d.fields[fi]
			if f.name != key {
				continue
			}
			if !f.slice && seen[j] {
				break
			}
			seen[j] = true
			value := p.value
			if p.valEsc {
				value = queryUnescape(value)
			}
			firstErr = f.set(out, value)
			break
		}
	}
	// ParseQuery's errors come first: too many parameters, then a
	// malformed member anywhere.
	switch {
	case pairs+strings.Count(raw, "&") > maxQueryParams:
		return &ParamError{In: "query", Problem: "too many query parameters"}
	case malformed:
		return &ParamError{In: "query", Problem: "malformed query string"}
	case firstErr != nil:
		return firstErr
	}
	for j, fi := range d.query {
		if !seen[j] {
			if err := d.fields[fi].absent(out); err != nil {
				return err
			}
		}
	}
	return nil
}

// pair is one '&'-separated member of a raw query.
type pair struct {
	end            int    // where the rest of the query starts
	amp            bool   // an '&' ended it
	key, value     string // raw, "" key for an empty member
	keyEsc, valEsc bool   // they hold '%' or '+'
}

// nextPair cuts the first member off raw and reports whether url.ParseQuery
// would find it malformed: a ';' in it, or a '%' not followed by two hex
// digits.
func nextPair(raw string) (p pair, malformed bool) {
	eq := -1
	esc := false
	i := 0
	for ; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '&':
			goto done
		case ';':
			malformed = true
		case '=':
			if eq < 0 {
				eq = i
				p.keyEsc, esc = esc, false
			}
		case '+':
			esc = true
		case '%':
			esc = true
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				malformed = true
			}
		}
	}
done:
	p.end = i
	if i < len(raw) {
		p.end, p.amp = i+1, true
	}
	if eq < 0 {
		p.key, p.keyEsc = raw[:i], esc
	} else {
		p.key, p.value, p.valEsc = raw[:eq], raw[eq+1:i], esc
	}
	return p, malformed
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// queryUnescape is url.QueryUnescape of a string with valid escapes.
func queryUnescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		// validEscapes was checked; cannot happen.
		panic(errors.New("httpadapter: queryUnescape: " + err.Error()))
	}
	return u
}
