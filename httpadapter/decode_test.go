package httpadapter

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// echo serves a memoized identity function of A at pattern, decoded by
// decode, on a real server.
func echo[A any](t *testing.T, pattern string, decode func(*http.Request) (A, error)) *httptest.Server {
	t.Helper()
	f := memo.New(func(ctx context.Context, a A) (A, error) { return a, nil },
		memo.Namespace("test.decode."+strings.NewReplacer("/", ".", " ", ".", "{", "", "}", "").Replace(pattern)), memo.WithBackend(memory.New()))
	mux := http.NewServeMux()
	mux.Handle(pattern, Handler(f, decode))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPathDecoders(t *testing.T) {
	sSrv := echo(t, "GET /s/{name}", PathString("name"))
	nSrv := echo(t, "GET /n/{id}", PathInt64("id"))
	wrong := echo(t, "GET /wrong/{other}", PathInt64("id"))
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
		{wrong, "/wrong/1", 400, "Bad Request: path parameter \"id\" is missing\n"},
	}
	for _, c := range cases {
		r := doReq(t, c.srv.Client(), "GET", c.srv.URL+c.path)
		if r.status != c.status || r.body != c.body {
			t.Errorf("GET %s = %v %q, want %v %q", c.path, r.status, r.body, c.status, c.body)
		}
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
		F float64 `query:"f"`
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
