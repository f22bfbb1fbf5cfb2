package httpadapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	labecho "github.com/labstack/echo/v4"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// userArgs is the argument of the routed endpoint: a path wildcard and a
// query parameter.
type userArgs struct {
	ID     int64 `path:"id"`
	Detail bool  `query:"detail"`
}

// userHandler is the endpoint each router serves at /users/{id}, and its
// ErrorLog.
func userHandler(t *testing.T) (http.Handler, *errLog) {
	f := memo.New(func(ctx context.Context, a userArgs) (string, error) {
		return fmt.Sprintf("user %d detail=%v", a.ID, a.Detail), nil
	}, memo.Namespace("test."+t.Name()), memo.WithBackend(memory.New()), memo.Expire(time.Minute))
	log := &errLog{}
	return Handler(f, Request[userArgs](), log.option()), log
}

// ginHandler is the shim gin needs: gin keeps its route parameters in
// c.Params, not in the request's path values, so copy them there.
func ginHandler(h http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		for _, p := range c.Params {
			c.Request.SetPathValue(p.Key, p.Value)
		}
		h.ServeHTTP(c.Writer, c.Request)
	}
}

// echoHandler is the same shim for echo (v4).
func echoHandler(h http.Handler) labecho.HandlerFunc {
	return func(c labecho.Context) error {
		r := c.Request()
		for i, name := range c.ParamNames() {
			r.SetPathValue(name, c.ParamValues()[i])
		}
		h.ServeHTTP(c.Response(), r)
		return nil
	}
}

// checkRouted sends GET /users/7?detail=true twice and /users/8 once
// through srv and checks the answers and the cache.
func checkRouted(t *testing.T, srv *httptest.Server) {
	t.Helper()
	for i, c := range []struct{ path, body, cache string }{
		{"/users/7?detail=true", `"user 7 detail=true"`, "MISS"},
		{"/users/7?detail=true", `"user 7 detail=true"`, "HIT"},
		{"/users/8", `"user 8 detail=false"`, "MISS"},
	} {
		r := doReq(t, srv.Client(), "GET", srv.URL+c.path)
		if r.status != 200 || r.body != c.body || r.header.Get("X-Cache") != c.cache {
			t.Errorf("request %d: GET %s = %d %s X-Cache %q, want 200 %s %s", i, c.path, r.status, r.body, r.header.Get("X-Cache"), c.body, c.cache)
		}
	}
	r := doReq(t, srv.Client(), "GET", srv.URL+"/users/x")
	if want := "Bad Request: path parameter \"id\" is not an integer in range\n"; r.status != 400 || r.body != want {
		t.Errorf("GET /users/x = %d %q, want 400 %q", r.status, r.body, want)
	}
}

// checkUnshimmed: without the shim the handler sees no path values and no
// pattern: a 500 and a RouteError in the log (a programmer's error), not
// the client's 400.
func checkUnshimmed(t *testing.T, srv *httptest.Server, log *errLog) {
	t.Helper()
	r := doReq(t, srv.Client(), "GET", srv.URL+"/users/7")
	if r.status != 500 {
		t.Errorf("GET /users/7 without the shim = %d %q, want 500", r.status, r.body)
	}
	var re *RouteError
	if errs := log.take(); len(errs) != 1 || !errors.As(errs[0], &re) || re.Wildcard != "id" || re.Pattern != "" {
		t.Errorf("ErrorLog got %v, want one *RouteError for id with no pattern", errs)
	}
}

func TestGin(t *testing.T) {
	gin.SetMode(gin.TestMode)
	h, _ := userHandler(t)
	r := gin.New()
	r.GET("/users/:id", ginHandler(h))
	srv := httptest.NewServer(r)
	defer srv.Close()
	checkRouted(t, srv)

	h, log := userHandler(t)
	r = gin.New()
	r.GET("/users/:id", gin.WrapH(h))
	bare := httptest.NewServer(r)
	defer bare.Close()
	checkUnshimmed(t, bare, log)
}

func TestEcho(t *testing.T) {
	h, _ := userHandler(t)
	e := labecho.New()
	e.GET("/users/:id", echoHandler(h))
	srv := httptest.NewServer(e)
	defer srv.Close()
	checkRouted(t, srv)

	h, log := userHandler(t)
	e = labecho.New()
	e.GET("/users/:id", labecho.WrapHandler(h))
	bare := httptest.NewServer(e)
	defer bare.Close()
	checkUnshimmed(t, bare, log)
}

// TestChi: chi (5.2 and later) sets the request's path values and
// Pattern itself: no shim; a wildcard the route lacks is a RouteError
// naming chi's pattern.
func TestChi(t *testing.T) {
	h, _ := userHandler(t)
	r := chi.NewRouter()
	r.Method("GET", "/users/{id}", h)
	srv := httptest.NewServer(r)
	defer srv.Close()
	checkRouted(t, srv)

	h, _ = userHandler(t)
	r = chi.NewRouter()
	r.Method("GET", "/users/{id:[0-9a-z]+}", h) // chi's regexp form
	re := httptest.NewServer(r)
	defer re.Close()
	checkRouted(t, re)

	h, log := userHandler(t)
	r = chi.NewRouter()
	r.Method("GET", "/people/{pid}", h)
	wrong := httptest.NewServer(r)
	defer wrong.Close()
	res := doReq(t, wrong.Client(), "GET", wrong.URL+"/people/7")
	var rerr *RouteError
	if errs := log.take(); res.status != 500 || len(errs) != 1 || !errors.As(errs[0], &rerr) || rerr.Pattern != "/people/{pid}" {
		t.Errorf("GET /people/7 (route without {id}) = %d, ErrorLog %v; want 500 and a *RouteError with pattern /people/{pid}", res.status, errs)
	}
}
