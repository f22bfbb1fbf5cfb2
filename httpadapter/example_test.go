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
