package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

type itemQuery struct {
	ID      int64         `path:"id"`
	Rest    string        `path:"rest"`
	Q       string        `query:"q,required"`
	Page    int           `query:"page" default:"1"`
	Fields  []string      `query:"field"`
	Ns      []uint16      `query:"n"`
	Score   float32       `query:"score"`
	Limit   *uint         `query:"limit"`
	Since   time.Time     `query:"since"`
	At      []time.Time   `query:"at"`
	Wait    time.Duration `query:"wait" default:"5s"`
	Exact   bool          `query:"exact"`
	Addr    netip.Addr    `query:"addr"`
	Tenant  string        `header:"X-Tenant"`
	Langs   []string      `header:"accept-language"`
	Version *int          `header:"X-Version"`
	Ignored string
	Skipped string `query:"-"`
}

func ptr[T any](v T) *T { return &v }

// base is what an itemQuery holds for a request with id 7, q=x and nothing
// else.
func base(f func(*itemQuery)) itemQuery {
	q := itemQuery{ID: 7, Q: "x", Page: 1, Wait: 5 * time.Second}
	if f != nil {
		f(&q)
	}
	return q
}

func TestRequest(t *testing.T) {
	decode := Request[itemQuery]()
	const pattern = "GET /items/{id}/{rest...}"
	cases := []struct {
		name    string
		path    map[string]string // nil: id=7
		query   string
		headers []string
		want    itemQuery
		wantErr *ParamError
	}{
		{name: "minimal", query: "q=x", want: base(nil)},
		{name: "everything",
			path:    map[string]string{"id": "-3", "rest": "a/b"},
			query:   "q=hello+world&page=2&field=a&field=b%26c&n=1&n=65535&score=1.5e3&limit=10&since=2026-12-03T10:00:00.5%2B01:00&at=2026-01-01T00:00:00Z&at=2026-01-02T00:00:00Z&wait=1h30m&exact=true&addr=192.0.2.1&utm=x&Ignored=1&Skipped=1",
			headers: []string{"X-Tenant", "acme", "Accept-Language", "fr, en;q=0.8", "Accept-Language", " ,de", "X-Version", "3"},
			want: itemQuery{ID: -3, Rest: "a/b", Q: "hello world", Page: 2, Fields: []string{"a", "b&c"}, Ns: []uint16{1, 65535},
				Score: 1500, Limit: ptr(uint(10)), Since: time.Date(2026, 12, 3, 10, 0, 0, 5e8, time.FixedZone("", 3600)),
				At:   []time.Time{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
				Wait: 90 * time.Minute, Exact: true, Addr: netip.MustParseAddr("192.0.2.1"),
				Tenant: "acme", Langs: []string{"fr", "en;q=0.8", "de"}, Version: ptr(3)}},
		{name: "unescaped plus in a time offset", query: "q=x&since=2026-12-03T10:00:00+01:00",
			want: base(func(q *itemQuery) { q.Since = time.Date(2026, 12, 3, 10, 0, 0, 0, time.FixedZone("", 3600)) })},
		{name: "scalar takes the first value", query: "q=x&q=y&page=3&page=oops", want: base(func(q *itemQuery) { q.Page = 3 })},
		{name: "empty string is a value", query: "q=", want: base(func(q *itemQuery) { q.Q = "" })},
		{name: "zero pointer is not nil", query: "q=x&limit=0", want: base(func(q *itemQuery) { q.Limit = ptr(uint(0)) })},
		{name: "a {rest...} that matched nothing", path: map[string]string{"id": "7", "rest": ""}, query: "q=x", want: base(nil)},
		{name: "empty header elements only", query: "q=x", headers: []string{"Accept-Language", " , "}, want: base(nil)},

		{name: "required missing", query: "page=2", wantErr: &ParamError{"query", "q", "is missing"}},
		{name: "bad path", path: map[string]string{"id": "seven"}, query: "q=x", wantErr: &ParamError{"path", "id", "is not an integer in range"}},
		{name: "int overflow", query: "q=x&page=99999999999999999999", wantErr: &ParamError{"query", "page", "is not an integer in range"}},
		{name: "empty int", query: "q=x&page=", wantErr: &ParamError{"query", "page", "is not an integer in range"}},
		{name: "uint16 overflow in a list", query: "q=x&n=1&n=65536", wantErr: &ParamError{"query", "n", "is not a non-negative integer in range"}},
		{name: "NaN", query: "q=x&score=NaN", wantErr: &ParamError{"query", "score", "is not a finite number"}},
		{name: "float32 overflow", query: "q=x&score=1e39", wantErr: &ParamError{"query", "score", "is not a finite number"}},
		{name: "bad time", query: "q=x&since=2026-12-03", wantErr: &ParamError{"query", "since", "is not an RFC 3339 time"}},
		{name: "bad duration", query: "q=x&wait=5", wantErr: &ParamError{"query", "wait", "is not a duration"}},
		{name: "bad bool", query: "q=x&exact=yes", wantErr: &ParamError{"query", "exact", "is not a boolean"}},
		{name: "bad text", query: "q=x&addr=999.1.1.1", wantErr: &ParamError{"query", "addr", "is not valid"}},
		{name: "bad header", query: "q=x", headers: []string{"X-Version", "v3"}, wantErr: &ParamError{"header", "X-Version", "is not an integer in range"}},
		{name: "malformed escape", query: "q=x&utm=%zz", wantErr: &ParamError{"query", "", "malformed query string"}},
		{name: "semicolon", query: "q=x;page=2", wantErr: &ParamError{"query", "", "malformed query string"}},
		{name: "malformed after a bad value", query: "page=x&a=%", wantErr: &ParamError{"query", "", "malformed query string"}},
		{name: "as many parameters as ParseQuery takes", query: "q=x" + strings.Repeat("&", maxQueryParams-1), want: base(nil)},
		{name: "too many parameters", query: "q=x" + strings.Repeat("&", maxQueryParams), wantErr: &ParamError{"query", "", "too many query parameters"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := c.query
			if len(q) > 80 {
				q = q[:80] + "..."
			}
			req := httptest.NewRequest("GET", "/items/x?"+c.query, nil)
			req.Pattern = pattern
			path := c.path
			if path == nil {
				path = map[string]string{"id": "7"}
			}
			for k, v := range path {
				req.SetPathValue(k, v)
			}
			for i := 0; i+1 < len(c.headers); i += 2 {
				req.Header.Add(c.headers[i], c.headers[i+1])
			}
			got, err := decode(req)
			if c.wantErr != nil {
				var pe *ParamError
				if !errors.As(err, &pe) || *pe != *c.wantErr {
					t.Fatalf("Request(%q) error = %#v, want %#v", q, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Request(%q) error = %v", q, err)
			}
			if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Request(%q) (-want +got):\n%s", q, diff)
			}
		})
	}
}

// TestRequestHandler: Request behind Handler on a real ServeMux: answers,
// the client's 400 with the parameter named, and a tag naming a wildcard
// the route lacks answered 500 and logged, not 400.
func TestRequestHandler(t *testing.T) {
	type args struct {
		ID     int64    `path:"id"`
		Fields []string `query:"field"`
		Tenant string   `header:"X-Tenant"`
	}
	var log errLog
	ok := echo(t, "GET /items/{id}", Request[args](), Vary("X-Tenant"), log.option())
	wrong := echo(t, "GET /things/{thing}", Request[args](), log.option())

	r := doReq(t, ok.Client(), "GET", ok.URL+"/items/7?field=a&field=b", "X-Tenant", "acme")
	if want := `{"ID":7,"Fields":["a","b"],"Tenant":"acme"}`; r.status != 200 || r.body != want {
		t.Errorf("GET /items/7 = %v %s, want 200 %s", r.status, r.body, want)
	}
	r = doReq(t, ok.Client(), "GET", ok.URL+"/items/7?field=a&field=b&utm=1", "X-Tenant", "acme")
	if r.header.Get("X-Cache") != "HIT" {
		t.Errorf("GET /items/7 with an untagged parameter: X-Cache = %q, want HIT", r.header.Get("X-Cache"))
	}
	r = doReq(t, ok.Client(), "GET", ok.URL+"/items/x")
	if want := "Bad Request: path parameter \"id\" is not an integer in range\n"; r.status != 400 || r.body != want {
		t.Errorf("GET /items/x = %v %q, want 400 %q", r.status, r.body, want)
	}
	if errs := log.take(); len(errs) != 0 {
		t.Errorf("ErrorLog got %v for client errors, want nothing", errs)
	}
	for range 2 {
		r = doReq(t, wrong.Client(), "GET", wrong.URL+"/things/7")
		if r.status != 500 || r.body != "Internal Server Error\n" {
			t.Errorf("GET /things/7 (route without {id}) = %v %q, want 500 \"Internal Server Error\\n\"", r.status, r.body)
		}
	}
	errs := log.take()
	var re *RouteError
	if len(errs) != 2 || !errors.As(errs[0], &re) || re.Wildcard != "id" || re.Pattern != "GET /things/{thing}" {
		t.Errorf("ErrorLog got %v, want a *RouteError{id, GET /things/{thing}} per request", errs)
	}
}

func TestHasWildcard(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"GET /users/{id}", "id", true},
		{"/users/{id}/posts/{pid}", "pid", true},
		{"/users/{id}/posts/{pid}", "p", false},
		{"/users/{uid}", "id", false},
		{"/users/{id2}", "id", false},
		{"/files/{path...}", "path", true},
		{"/files/{path..}", "path", false},
		{"/users/{id:[0-9]+}", "id", true}, // chi
		{"/static/*", "*", true},           // chi
		{"/static/", "*", false},
		{"/id/{x}", "id", false},
		{"example.com/{id}", "id", true},
		{"", "id", false},
	}
	for _, c := range cases {
		if got := hasWildcard(c.pattern, c.name); got != c.want {
			t.Errorf("hasWildcard(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

type textOnValue struct{ s string }

func (t *textOnValue) UnmarshalText(b []byte) error { t.s = string(b); return nil }

func TestRequestPanics(t *testing.T) {
	type embedded struct {
		X string `query:"x"`
	}
	cases := map[string]func(){
		"not a struct":      func() { Request[int]() },
		"pointer to struct": func() { Request[*itemQuery]() },
		"complex": func() {
			Request[struct {
				C complex64 `query:"c"`
			}]()
		},
		"map": func() {
			Request[struct {
				M map[string]string `query:"m"`
			}]()
		},
		"pointer to pointer": func() {
			Request[struct {
				P **int `query:"p"`
			}]()
		},
		"slice of pointers": func() {
			Request[struct {
				P []*int `query:"p"`
			}]()
		},
		"slice of slices": func() {
			Request[struct {
				P [][]int `query:"p"`
			}]()
		},
		"nested struct": func() {
			Request[struct {
				E embedded `query:"e"`
			}]()
		},
		"path slice": func() {
			Request[struct {
				P []string `path:"p"`
			}]()
		},
		"path required": func() {
			Request[struct {
				P string `path:"p,required"`
			}]()
		},
		"two tags": func() {
			Request[struct {
				P string `path:"p" query:"p"`
			}]()
		},
		"empty name": func() {
			Request[struct {
				H string `header:""`
			}]()
		},
		"empty name option": func() {
			Request[struct {
				H string `query:",required"`
			}]()
		},
		"unknown option": func() {
			Request[struct {
				H string `query:"h,omitempty"`
			}]()
		},
		"bad header name": func() {
			Request[struct {
				H string `header:"X Tenant"`
			}]()
		},
		"duplicate": func() {
			Request[struct {
				A, B string `query:"a"`
			}]()
		},
		"duplicate header case": func() {
			Request[struct {
				A string `header:"x-a"`
				B string `header:"X-A"`
			}]()
		},
		"bad default": func() {
			Request[struct {
				N int `query:"n" default:"one"`
			}]()
		},
		"default on slice": func() {
			Request[struct {
				N []int `query:"n" default:"1"`
			}]()
		},
		"default on pointer": func() {
			Request[struct {
				N *int `query:"n" default:"1"`
			}]()
		},
		"default and required": func() {
			Request[struct {
				N int `query:"n,required" default:"1"`
			}]()
		},
		"unexported": func() {
			Request[struct {
				n int `query:"n"`
			}]()
		},
		"embedded pointer": func() { Request[struct{ *embedded }]() },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if s, _ := recover().(string); !strings.HasPrefix(s, "httpadapter: Request[") {
					t.Errorf("panic = %q, want an httpadapter: Request[...] message", s)
				}
			}()
			fn()
		})
	}
	// Not panics: a text unmarshaler on the value (a pointer receiver), a
	// pointer to one, a list of them; untagged unsupported fields; an
	// embedded struct's fields.
	type fine struct {
		D  textOnValue   `query:"d" default:"dflt"`
		T  textOnValue   `query:"t"`
		TP *textOnValue  `query:"tp"`
		TS []textOnValue `query:"ts"`
		M  map[string]int
		embedded
	}
	req := httptest.NewRequest("GET", "/?t=a&tp=b&ts=c&ts=d&x=e", nil)
	got, err := Request[fine]()(req)
	if err != nil || got.D.s != "dflt" || got.T.s != "a" || got.TP.s != "b" || len(got.TS) != 2 || got.TS[1].s != "d" || got.X != "e" {
		t.Errorf("Request[fine] = %+v, %v", got, err)
	}
}

// TestNoArg: a zero-argument endpoint is one cache entry whatever the
// request carries.
func TestNoArg(t *testing.T) {
	var calls atomic.Int64
	f := memo.New(func(ctx context.Context, _ struct{}) (string, error) {
		return fmt.Sprintf("stats %d", calls.Add(1)), nil
	}, memo.Namespace("test.noarg"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
	mux := http.NewServeMux()
	mux.Handle("GET /stats", Handler(f, NoArg()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for i, u := range []string{"/stats", "/stats?x=1", "/stats?page=2"} {
		r := doReq(t, srv.Client(), "GET", srv.URL+u, "X-Tenant", strconv.Itoa(i))
		wantCache := "HIT"
		if i == 0 {
			wantCache = "MISS"
		}
		if r.status != 200 || r.body != `"stats 1"` || r.header.Get("X-Cache") != wantCache {
			t.Errorf("GET %s = %v %s %s, want 200 \"stats 1\" %s", u, r.status, r.body, r.header.Get("X-Cache"), wantCache)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
}

// fuzzArgs covers every kind the query reader parses.
type fuzzArgs struct {
	S  string    `query:"s"`
	SS []string  `query:"ss"`
	I  int8      `query:"i"`
	IS []int     `query:"is"`
	U  *uint32   `query:"u"`
	F  float64   `query:"f"`
	B  bool      `query:"b"`
	T  time.Time `query:"t"`
	E  string    `query:"a b&c"` // a name that needs unescaping
}

// refDecode is the obvious decoder: url.ParseQuery, then each field from
// its values.
func refDecode(raw string) (fuzzArgs, bool, bool) {
	var out fuzzArgs
	q, err := url.ParseQuery(raw)
	if err != nil {
		return out, false, true
	}
	v := reflect.ValueOf(&out).Elem()
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		vals := q[sf.Tag.Get("query")]
		if len(vals) == 0 {
			continue
		}
		fv := v.Field(i)
		switch {
		case sf.Type.Kind() == reflect.Slice:
			for _, s := range vals {
				e := reflect.New(sf.Type.Elem()).Elem()
				k, _ := kindOf(e.Type())
				if !parseValue(e, k, s) {
					return out, false, false
				}
				fv.Set(reflect.Append(fv, e))
			}
		case sf.Type.Kind() == reflect.Pointer:
			e := reflect.New(sf.Type.Elem())
			k, _ := kindOf(e.Elem().Type())
			if !parseValue(e.Elem(), k, vals[0]) {
				return out, false, false
			}
			fv.Set(e)
		default:
			k, _ := kindOf(fv.Type())
			if !parseValue(fv, k, vals[0]) {
				return out, false, false
			}
		}
	}
	return out, true, false
}

// FuzzRequestQuery checks the query reader against url.ParseQuery: the
// same values, an error exactly when the obvious decoder has one, and
// "malformed" exactly when ParseQuery fails.
func FuzzRequestQuery(f *testing.F) {
	for _, s := range []string{
		"", "s=a&ss=b&ss=c&i=-8&is=1&is=2&u=7&f=1.5&b=true&t=2026-12-03T10:00:00Z",
		"a+b%26c=x", "a%20b%26c=y&a+b&c=z", "s=%zz", "s=a;b", "s=a&&&=&==", "i=128", "i=1&i=x",
		"f=NaN", "f=0x1p-2", "u=-1", "t=2026-12-03T10:00:00+01:00", "%", "ss=%41%4", "s=%e2%82%ac",
	} {
		f.Add(s)
	}
	decode := Request[fuzzArgs]()
	f.Fuzz(func(t *testing.T, raw string) {
		want, ok, malformed := refDecode(raw)
		req := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: raw}, Header: http.Header{}}
		got, err := decode(req)
		var pe *ParamError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("decode(%q) error %v is not a *ParamError", raw, err)
		}
		switch {
		case malformed:
			if pe == nil || pe.Name != "" {
				t.Fatalf("decode(%q) = %v, want a malformed-query error (ParseQuery fails)", raw, err)
			}
		case !ok:
			if pe == nil || pe.Name == "" {
				t.Fatalf("decode(%q) = %v, want a parameter's error", raw, err)
			}
		case err != nil:
			t.Fatalf("decode(%q) error = %v, want %+v", raw, err, want)
		default:
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("decode(%q) (-want +got):\n%s", raw, diff)
			}
		}
	})
}

// benchArgs is a typical path-plus-query-plus-header argument.
type benchArgs struct {
	ID     int64    `path:"id"`
	Q      string   `query:"q"`
	Page   int      `query:"page" default:"1"`
	Fields []string `query:"field"`
	Tenant string   `header:"X-Tenant"`
}

// handDecode is what the same decode takes by hand (the issue's 18 lines).
func handDecode(r *http.Request) (benchArgs, error) {
	var a benchArgs
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return a, errors.New(`path parameter "id" is not an integer`)
	}
	a.ID = id
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return a, errors.New("malformed query string")
	}
	a.Q = q.Get("q")
	a.Page = 1
	if p := q.Get("page"); p != "" {
		if a.Page, err = strconv.Atoi(p); err != nil {
			return a, errors.New(`query parameter "page" is not an integer`)
		}
	}
	a.Fields = q["field"]
	a.Tenant = r.Header.Get("X-Tenant")
	return a, nil
}

// BenchmarkRequestDecode: Request[T] against the hand-written decoder of
// the same struct, on one request (path value, three query parameters, one
// repeated, utm noise, one header).
func BenchmarkRequestDecode(b *testing.B) {
	req := httptest.NewRequest("GET", "/items/42?q=go+lang&page=3&field=a&field=b&utm_source=x", nil)
	req.Pattern = "GET /items/{id}"
	req.SetPathValue("id", "42")
	req.Header.Set("X-Tenant", "acme")
	want, _ := handDecode(req)
	for _, c := range []struct {
		name   string
		decode func(*http.Request) (benchArgs, error)
	}{{"Request", Request[benchArgs]()}, {"handwritten", handDecode}} {
		b.Run(c.name, func(b *testing.B) {
			if got, err := c.decode(req); err != nil || !reflect.DeepEqual(got, want) {
				b.Fatalf("decode = %+v, %v, want %+v", got, err, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.decode(req) //nolint:errcheck
			}
		})
	}
}

// TestParamError422: the FastAPI set-up docs/http.md describes, a 422
// with {"detail": ...} for the client's errors, and a RouteError still a
// 500 without its text.
func TestParamError422(t *testing.T) {
	type args struct {
		ID   int64 `path:"id"`
		Page int   `query:"page"`
	}
	status := ErrorStatus(func(err error) int {
		var pe *ParamError
		if errors.As(err, &pe) {
			return http.StatusUnprocessableEntity
		}
		return 0
	})
	srv := echo(t, "GET /items/{id}", Request[args](), status, ErrorBody(JSONError))
	r := doReq(t, srv.Client(), "GET", srv.URL+"/items/7?page=two")
	if want := `{"detail":"query parameter \"page\" is not an integer in range"}` + "\n"; r.status != 422 || r.body != want {
		t.Errorf("GET ?page=two = %d %q, want 422 %q", r.status, r.body, want)
	}
	var log errLog
	wrong := echo(t, "GET /things/{thing}", Request[args](), status, ErrorBody(JSONError), log.option())
	r = doReq(t, wrong.Client(), "GET", wrong.URL+"/things/7")
	if want := `{"detail":"Internal Server Error"}` + "\n"; r.status != 500 || r.body != want {
		t.Errorf("GET on a route without {id} = %d %q, want 500 %q", r.status, r.body, want)
	}
}

// Decode a path wildcard, query parameters and a header into one
// argument.
func ExampleRequest() {
	type ItemArgs struct {
		ID     int64    `path:"id"`
		Fields []string `query:"field"`
		Page   int      `query:"page" default:"1"`
		Tenant string   `header:"X-Tenant"`
	}
	items := memo.New(func(ctx context.Context, a ItemArgs) (string, error) {
		return fmt.Sprintf("item %d of %s, fields %v, page %d", a.ID, a.Tenant, a.Fields, a.Page), nil
	}, memo.Namespace("example.items"), memo.WithBackend(memory.New()))
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", Handler(items, Request[ItemArgs](), Vary("X-Tenant")))

	for _, u := range []string{"/items/7?field=name&field=price", "/items/7?page=x"} {
		req := httptest.NewRequest("GET", u, nil)
		req.Header.Set("X-Tenant", "acme")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String(), "\n")
	}
	// Output:
	// 200 "item 7 of acme, fields [name price], page 1"
	// 400 Bad Request: query parameter "page" is not an integer in range
}

// BenchmarkHitDecode: a cache hit through Handler, its argument decoded by
// Request[T], by the hand-written decoder, and by a constant (no decoding
// at all), in process: what decoding adds to a hit.
func BenchmarkHitDecode(b *testing.B) {
	f := memo.New(func(ctx context.Context, a benchArgs) (string, error) {
		return fmt.Sprintf("item %d", a.ID), nil
	}, memo.Namespace("bench.hitdecode"), memo.WithBackend(memory.New()), memo.Expire(time.Hour))
	req := httptest.NewRequest("GET", "/items/42?q=go+lang&page=3&field=a&field=b&utm_source=x", nil)
	req.Pattern = "GET /items/{id}"
	req.SetPathValue("id", "42")
	req.Header.Set("X-Tenant", "acme")
	fixed, _ := handDecode(req)
	for _, c := range []struct {
		name   string
		decode func(*http.Request) (benchArgs, error)
	}{
		{"Request", Request[benchArgs]()},
		{"handwritten", handDecode},
		{"constant", func(*http.Request) (benchArgs, error) { return fixed, nil }},
	} {
		h := Handler(f, c.decode, Vary("X-Tenant"))
		b.Run(c.name, func(b *testing.B) { runInProcess(b, h, req, 200, false) })
	}
}

// FuzzRequestHeader checks header lists against the obvious reading:
// every line split at commas, elements trimmed of spaces and tabs, empty
// ones dropped; a scalar takes the first line as is.
func FuzzRequestHeader(f *testing.F) {
	for _, s := range [][2]string{{"a, b", "c"}, {" , ", ""}, {"1,2", "x"}, {"\t7\t", "8"}, {"", ","}} {
		f.Add(s[0], s[1])
	}
	type args struct {
		List  []string `header:"X-List"`
		Ints  []int    `header:"X-Ints"`
		First string   `header:"X-First"`
	}
	decode := Request[args]()
	f.Fuzz(func(t *testing.T, l1, l2 string) {
		h := http.Header{"X-List": {l1, l2}, "X-Ints": {l1, l2}, "X-First": {l1, l2}}
		got, err := decode(&http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: h})
		var want args
		want.First = l1
		intsOK := true
		for _, line := range []string{l1, l2} {
			for _, e := range strings.Split(line, ",") {
				if e = strings.Trim(e, " \t"); e == "" {
					continue
				}
				want.List = append(want.List, e)
				n, perr := strconv.Atoi(e)
				if perr != nil {
					intsOK = false
				}
				want.Ints = append(want.Ints, n)
			}
		}
		if !intsOK {
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Name != "X-Ints" {
				t.Fatalf("decode(%q, %q) error = %v, want X-Ints's", l1, l2, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("decode(%q, %q) error = %v", l1, l2, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decode(%q, %q) (-want +got):\n%s", l1, l2, diff)
		}
	})
}
