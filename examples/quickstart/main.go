// Command quickstart is a small HTTP service whose endpoints answer from
// memoized functions on memo's local tier, the default store.
//
//	go run ./examples/quickstart            # listens on 127.0.0.1:8080 (ADDR overrides)
//	curl -i http://127.0.0.1:8080/users/42  # X-Cache: MISS, after ~300 ms
//	curl -i http://127.0.0.1:8080/users/42  # X-Cache: HIT, at once
//	curl -i -H 'If-None-Match: "<ETag>"' http://127.0.0.1:8080/users/42  # 304
//	curl -i -H 'Cache-Control: no-cache' http://127.0.0.1:8080/users/42  # recomputed
//	curl -X DELETE http://127.0.0.1:8080/users/42  # forget the entry
//	curl -i http://127.0.0.1:8080/users/9999  # 404 after ~300 ms; again: 404 from the cache
//	curl -i http://127.0.0.1:8080/squares?n=12     # a plain memoized function
//	curl http://127.0.0.1:8080/debug/memo          # hits, misses, ... of each function
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/httpadapter"
)

// User is what the slow lookup returns.
type User struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

// errNoUser is the sentinel that memo.NegativeCache remembers: a missing
// user is answered from the cache for a while rather than asked of the
// database on every request.
var errNoUser = errors.New("no such user")

// notFound is an error that tells the adapter its own HTTP status.
type notFound struct{ id int64 }

func (e notFound) Error() string   { return fmt.Sprintf("user %d not found", e.id) }
func (e notFound) HTTPStatus() int { return http.StatusNotFound }
func (e notFound) Unwrap() error   { return errNoUser }

// fetchUser stands for a slow database query.
func fetchUser(ctx context.Context, id int64) (User, error) {
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return User{}, ctx.Err()
	}
	if id <= 0 || id > 1000 {
		return User{}, notFound{id}
	}
	return User{
		ID:        id,
		Name:      fmt.Sprintf("User %d", id),
		Email:     fmt.Sprintf("user%d@example.com", id),
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id) * time.Hour),
	}, nil
}

// square is memoized and called like the plain function it wraps.
func square(ctx context.Context, n int64) (int64, error) {
	time.Sleep(100 * time.Millisecond)
	return n * n, nil
}

// squares memoizes square; getSquare is its Call, a function of square's
// own type (memo.Wrap(square, ...) gives just that, when Stats and Forget
// are not wanted).
var (
	squares   = memo.New(square, memo.Expire(10*time.Second))
	getSquare = squares.Call
)

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	users := newUsers()
	srv := &http.Server{Addr: addr, Handler: newMux(users), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("quickstart listening on http://%s (try: curl -i http://%s/users/42)", addr, addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newUsers memoizes fetchUser: answers stay fresh for a minute and are
// then served stale for ten more seconds while one refresh runs, and a
// missing user is remembered for 30 s.
func newUsers(opts ...memo.Option) *memo.Func[int64, User] {
	return memo.New(fetchUser, append([]memo.Option{
		memo.Expire(60 * time.Second),
		memo.StaleWhileRevalidate(10 * time.Second),
		memo.NegativeCache(30*time.Second, errNoUser),
	}, opts...)...)
}

// newMux routes the service's endpoints.
func newMux(users *memo.Func[int64, User]) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", httpadapter.Handler(users, httpadapter.PathInt64("id")))
	mux.HandleFunc("DELETE /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		if err := users.Forget(r.Context(), id); err != nil {
			log.Printf("forget %d: %v", id, err)
			http.Error(w, "could not forget", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /squares", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil {
			http.Error(w, "n must be an integer", http.StatusBadRequest)
			return
		}
		start := time.Now()
		sq, err := getSquare(r.Context(), n)
		if err != nil {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d squared is %d (answered in %v)\n", n, sq, time.Since(start).Round(time.Millisecond))
	})
	// What each function's cache did since start: watch hits and misses
	// move as you curl the endpoints above.
	mux.HandleFunc("GET /debug/memo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]memo.Stats{"users": users.Stats(), "squares": squares.Stats()})
	})
	return mux
}
