package httpadapter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/httpadapter"
)

type User struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func fetchUser(ctx context.Context, id int64) (User, error) {
	return User{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
}

// Serve a memoized function at GET /users/{id}: the first request computes
// and stores (MISS), the second is a HIT, and a client that presents the
// ETag it was given gets 304 Not Modified with no body.
func Example() {
	users := memo.New(fetchUser,
		memo.Namespace("example.users"),
		memo.WithBackend(memory.New()),
		memo.Expire(time.Minute))

	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", httpadapter.Handler(users, httpadapter.PathInt64("id")))

	get := func(hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/users/7", nil)
		if len(hdr) == 2 {
			req.Header.Set(hdr[0], hdr[1])
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}

	first := get()
	fmt.Println(first.Code, first.Header().Get("X-Cache"), first.Body.String())
	second := get()
	fmt.Println(second.Code, second.Header().Get("X-Cache"), second.Body.String())
	again := get("If-None-Match", second.Header().Get("ETag"))
	fmt.Printf("%d %s %q\n", again.Code, again.Header().Get("X-Cache"), again.Body.String())
	fresh := get("Cache-Control", "no-store")
	fmt.Println(fresh.Code, fresh.Header().Get("X-Cache"), fresh.Header().Get("Cache-Control"))
	// Output:
	// 200 MISS {"id":7,"name":"user-7"}
	// 200 HIT {"id":7,"name":"user-7"}
	// 304 HIT ""
	// 200 BYPASS no-store
}

// FastAPI's HTTPException and its {"detail": ...} body: fn returns
// httpadapter.Error, and ErrorBody(JSONError) renders every error answer.
// The text of fn's other errors is never sent.
func ExampleJSONError() {
	orders := memo.New(func(ctx context.Context, id int64) (User, error) {
		if id == 404 {
			return User{}, httpadapter.Error(http.StatusNotFound, "no order 404")
		}
		return User{}, fmt.Errorf("pq: connection refused")
	}, memo.Namespace("example.jsonerror"), memo.WithBackend(memory.New()))

	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}", httpadapter.Handler(orders, httpadapter.PathInt64("id"),
		httpadapter.ErrorBody(httpadapter.JSONError),
		httpadapter.ErrorLog(func(*http.Request, error) {})))

	for _, path := range []string{"/orders/404", "/orders/1"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 404 {"detail":"no order 404"}
	// 500 {"detail":"Internal Server Error"}
}

// An HTML fragment served as is, with its ETag and every caching header.
func ExampleContentType() {
	cards := memo.New(func(ctx context.Context, id int64) (string, error) {
		return fmt.Sprintf("<div class=\"card\">#%d</div>", id), nil
	}, memo.Namespace("example.cards"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))

	mux := http.NewServeMux()
	mux.Handle("GET /cards/{id}", httpadapter.Handler(cards, httpadapter.PathInt64("id"),
		httpadapter.ContentType("text/html; charset=utf-8")))

	for range 2 {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/cards/7", nil))
		fmt.Println(rec.Header().Get("X-Cache"), rec.Header().Get("Content-Type"), rec.Body.String())
	}
	// Output:
	// MISS text/html; charset=utf-8 <div class="card">#7</div>
	// HIT text/html; charset=utf-8 <div class="card">#7</div>
}
