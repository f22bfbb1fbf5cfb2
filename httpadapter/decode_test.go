package httpadapter

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// echo serves a memoized identity function of A at pattern, decoded by
// decode, on a real server.
func echo[A any](t *testing.T, pattern string, decode func(*http.Request) (A, error), opts ...Option) *httptest.Server {
	t.Helper()
	f := memo.New(func(ctx context.Context, a A) (A, error) { return a, nil },
		memo.Namespace("test.decode."+t.Name()+"."+strings.NewReplacer("/", ".", " ", ".", "{", "", "}", "").Replace(pattern)), memo.WithBackend(memory.New()))
	mux := http.NewServeMux()
	mux.Handle(pattern, Handler(f, decode, opts...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// errLog collects what a handler passes to ErrorLog.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) option() Option {
	return ErrorLog(func(_ *http.Request, err error) { l.mu.Lock(); l.errs = append(l.errs, err); l.mu.Unlock() })
}

func (l *errLog) take() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.errs
	l.errs = nil
	return e
}

func TestPathDecoders(t *testing.T) {
	var log errLog
	sSrv := echo(t, "GET /s/{name}", PathString("name"))
	nSrv := echo(t, "GET /n/{id}", PathInt64("id"))
	rest := echo(t, "GET /r/{path...}", PathString("path"))
	// A decoder asking for a wildcard its route lacks: the programmer's
	// error, a 500 and a log line, never the client's 400.
	wrong := echo(t, "GET /wrong/{other}", PathInt64("id"), log.option())
	wrongS := echo(t, "GET /wrongs/{other}", PathString("id"), log.option())
	// Not even a blanket ErrorStatus turns it into a client error.
	wrong422 := echo(t, "GET /wrong422/{other}", PathInt64("id"), log.option(), ErrorStatus(func(error) int { return 422 }))
	cases := []struct {
		srv    *httptest.Server
		path   string
		status int
		body   string
	}{
		{sSrv, "/s/alice", 200, `"alice"`},
		{sSrv, "/s/a%20b", 200, `"a b"`},
		{nSrv, "/n/42", 200, `42`},
		{nSrv, "/n/-7", 200, `-7`},
		{nSrv, "/n/9223372036854775807", 200, `9223372036854775807`},
		{nSrv, "/n/9223372036854775808", 400, "Bad Request: path parameter \"id\" is not a 64-bit integer\n"},
		{nSrv, "/n/x1", 400, "Bad Request: path parameter \"id\" is not a 64-bit integer\n"},
		{nSrv, "/n/1.5", 400, "Bad Request: path parameter \"id\" is not a 64-bit integer\n"},
		{rest, "/r/a/b", 200, `"a/b"`},
		{rest, "/r/", 400, "Bad Request: path parameter \"path\" is missing\n"},
		{wrong, "/wrong/1", 500, "Internal Server Error\n"},
		{wrongS, "/wrongs/x", 500, "Internal Server Error\n"},
		{wrong422, "/wrong422/x", 500, "Internal Server Error\n"},
	}
	for _, c := range cases {
		r := doReq(t, c.srv.Client(), "GET", c.srv.URL+c.path)
		if r.status != c.status || r.body != c.body {
			t.Errorf("GET %s = %v %q, want %v %q", c.path, r.status, r.body, c.status, c.body)
		}
	}
	errs := log.take()
	if len(errs) != 3 {
		t.Fatalf("ErrorLog got %d errors, want 3 (one per request to a wrong route): %v", len(errs), errs)
	}
	for i, err := range errs {
		var re *RouteError
		if !errors.As(err, &re) || re.Wildcard != "id" || !strings.Contains(re.Pattern, "/{other}") {
			t.Errorf("logged error %d = %#v, want a *RouteError for wildcard id and a pattern with {other}", i, err)
		}
	}
}

// TestPathNoPattern: a router that sets neither the pattern nor the path
// values (gin.WrapH without the shim) is a RouteError too.
func TestPathNoPattern(t *testing.T) {
	req := httptest.NewRequest("GET", "/users/7", nil)
	for name, decode := range map[string]func(*http.Request) error{
		"PathString": func(r *http.Request) error { _, err := PathString("id")(r); return err },
		"PathInt64":  func(r *http.Request) error { _, err := PathInt64("id")(r); return err },
		"Request": func(r *http.Request) error {
			_, err := Request[struct {
				ID int `path:"id"`
			}]()(r)
			return err
		},
	} {
		var re *RouteError
		if err := decode(req); !errors.As(err, &re) || re.Pattern != "" || re.HTTPStatus() != 500 {
			t.Errorf("%s(no pattern, no value) = %v, want a *RouteError with an empty Pattern", name, err)
		}
	}
	req.SetPathValue("id", "7")
	if n, err := PathInt64("id")(req); n != 7 || err != nil {
		t.Errorf("PathInt64(SetPathValue id=7, no pattern) = %v, %v, want 7, nil", n, err)
	}
}

type search struct {
	Term    string `query:"q"`
	Page    int    `query:"page"`
	Small   int8   `query:"small"`
	Limit   uint16 `query:"limit"`
	Exact   bool   `query:"exact"`
	Ignored string
	Skipped string `query:"-"`
	embedded
}

type embedded struct {
	Lang string `query:"lang"`
}

func TestQuery(t *testing.T) {
	srv := echo(t, "GET /q", Query[search]())
	cases := []struct {
		query  string
		status int
		want   search
		msg    string
	}{
		{"q=go&page=2&small=-8&limit=50&exact=true&lang=fr", 200, search{Term: "go", Page: 2, Small: -8, Limit: 50, Exact: true, embedded: embedded{"fr"}}, ""},
		{"", 200, search{}, ""},
		{"q=a&utm_source=x&Ignored=1&Skipped=1&-=1", 200, search{Term: "a"}, ""},
		{"q=first&q=second", 200, search{Term: "first"}, ""},
		{"q=a+b%26c", 200, search{Term: "a b&c"}, ""},
		{"exact=0", 200, search{}, ""},
		{"page=x", 400, search{}, `query parameter "page" is not an integer in range`},
		{"small=128", 400, search{}, `query parameter "small" is not an integer in range`},
		{"limit=-1", 400, search{}, `query parameter "limit" is not a non-negative integer in range`},
		{"limit=65536", 400, search{}, `query parameter "limit" is not a non-negative integer in range`},
		{"exact=yes", 400, search{}, `query parameter "exact" is not a boolean`},
		{"q=%zz", 400, search{}, "malformed query string"},
	}
	for _, c := range cases {
		r := doReq(t, srv.Client(), "GET", srv.URL+"/q?"+c.query)
		if r.status != c.status {
			t.Errorf("?%s: status = %v, want %v (%s)", c.query, r.status, c.status, r.body)
			continue
		}
		if c.status != 200 {
			if want := "Bad Request: " + c.msg + "\n"; r.body != want {
				t.Errorf("?%s: body = %q, want %q", c.query, r.body, want)
			}
			continue
		}
		var got search
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("?%s: %v in %s", c.query, err, r.body)
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(search{})); diff != "" {
			t.Errorf("?%s (-want +got):\n%s", c.query, diff)
		}
	}
	// Ignored parameters do not split the cache key.
	a := doReq(t, srv.Client(), "GET", srv.URL+"/q?q=k&utm=1")
	b := doReq(t, srv.Client(), "GET", srv.URL+"/q?utm=2&q=k")
	if a.header.Get("Etag") != b.header.Get("Etag") || b.header.Get("X-Cache") != "HIT" {
		t.Errorf("second query X-Cache = %v, want HIT for the same tagged parameters", b.header.Get("X-Cache"))
	}
}

func TestQueryPanics(t *testing.T) {
	type badType struct {
		F complex128 `query:"f"`
	}
	type unexported struct {
		f string `query:"f"`
	}
	type emptyTag struct {
		F string `query:""`
	}
	type viaPointer struct {
		*embedded
	}
	_ = unexported{}.f
	cases := map[string]func(){
		"not a struct":      func() { Query[int]() },
		"unsupported type":  func() { Query[badType]() },
		"unexported":        func() { Query[unexported]() },
		"empty tag":         func() { Query[emptyTag]() },
		"embedded pointer":  func() { Query[viaPointer]() },
		"pointer to struct": func() { Query[*search]() },
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if s, _ := recover().(string); !strings.HasPrefix(s, "httpadapter: Query[") {
					t.Errorf("panic = %q, want an httpadapter: Query[...] message", s)
				}
			}()
			fn()
		})
	}
}

// TestQueryTypes: Query takes lists, floats and times, which panicked at
// construction before it became a form of Request.
func TestQueryTypes(t *testing.T) {
	type q struct {
		Tags  []string      `query:"tag"`
		IDs   []int         `query:"id"`
		Score float64       `query:"score"`
		Since time.Time     `query:"since"`
		Wait  time.Duration `query:"wait"`
		Page  int           `query:"page" default:"1"`
		Head  string        `header:"X-Ignored"` // Query reads only query tags
	}
	srv := echo(t, "GET /q", Query[q]())
	cases := []struct {
		query  string
		status int
		want   q
	}{
		{"tag=a&tag=b&id=3&id=1&score=2.5&since=2026-12-03T10:00:00Z&wait=1m30s", 200,
			q{Tags: []string{"a", "b"}, IDs: []int{3, 1}, Score: 2.5, Since: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), Wait: 90 * time.Second, Page: 1}},
		{"page=3", 200, q{Page: 3}},
		{"score=NaN", 400, q{}},
		{"id=1&id=x", 400, q{}},
		{"since=yesterday", 400, q{}},
	}
	for _, c := range cases {
		r := doReq(t, srv.Client(), "GET", srv.URL+"/q?"+c.query, "X-Ignored", "h")
		if r.status != c.status {
			t.Errorf("?%s: status = %v, want %v (%s)", c.query, r.status, c.status, r.body)
			continue
		}
		if c.status != 200 {
			continue
		}
		var got q // memo.JSON writes a Duration as text
		if err := memo.JSON.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("?%s: %v in %s", c.query, err, r.body)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("?%s (-want +got):\n%s", c.query, diff)
		}
	}
}
