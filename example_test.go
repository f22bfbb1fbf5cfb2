package memo_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

type User struct {
	ID   int64
	Name string
	Tags []string
}

var lookups int

// fetchUser stands for a slow lookup in a database.
func fetchUser(ctx context.Context, id int64) (User, error) {
	lookups++
	return User{ID: id, Name: fmt.Sprintf("user %d", id), Tags: []string{"new"}}, nil
}

func ExampleWrap() {
	getUser := memo.Wrap(fetchUser, memo.Expire(time.Minute), memo.WithBackend(memory.New()))

	ctx := context.Background()
	u, _ := getUser(ctx, 42) // a miss: fetchUser runs
	u.Tags[0] = "changed"    // the caller's copy only
	u, _ = getUser(ctx, 42)  // a hit: decoded into a new User
	fmt.Println(u.Name, u.Tags, "lookups:", lookups)
	// Output: user 42 [new] lookups: 1
}

func ExampleNew() {
	var n int
	square := func(ctx context.Context, x int) (int, error) { n++; return x * x, nil }
	// A closure needs a Namespace: its generated name is not stable.
	f := memo.New(square, memo.Namespace("square"), memo.WithBackend(memory.New()))

	ctx := context.Background()
	f.Call(ctx, 3)
	f.Call(ctx, 3)
	fmt.Println("key:", f.Key(3), "runs:", n)
	f.Forget(ctx, 3)
	f.Call(ctx, 3)
	fmt.Println("runs after Forget:", n)
	f.Clear(ctx)
	f.Call(ctx, 3)
	fmt.Println("runs after Clear:", n)
	// Output:
	// key: memo:square:3 runs: 1
	// runs after Forget: 2
	// runs after Clear: 3
}

type Search struct {
	Query string
	Page  int
}

func ExampleKeyFunc() {
	search := func(ctx context.Context, s Search) ([]string, error) { return []string{s.Query}, nil }
	f := memo.New(search, memo.Namespace("search"),
		memo.KeyFunc(func(s Search) string { return fmt.Sprintf("%s.p%d", s.Query, s.Page) }))
	fmt.Println(f.Key(Search{"go", 2}))
	fmt.Println(f.Key(Search{"go generics", 1})) // a space: hashed
	// Output:
	// memo:search:go.p2
	// memo:search:~5y56UsABouuOhk7QM9blC0dnl77SAeDT0_iwYel-c-A
}

func ExampleOnError() {
	reports := make(chan string, 2)
	f := memo.New(fetchUser, memo.WithBackend(brokenBackend{}),
		memo.OnError(func(ctx context.Context, err error) {
			var be *memo.BackendError
			if errors.As(err, &be) {
				reports <- fmt.Sprintf("reported: %s %v", be.Op, be.Err)
			}
		}))
	u, err := f.Call(context.Background(), 7) // the store is down: fn answers
	fmt.Println(u.Name, err)
	fmt.Println(<-reports) // the failed read; memo does not write to a store that just failed
	// Output:
	// user 7 <nil>
	// reported: get connection refused
}

// brokenBackend fails every call, as a store that is down would.
type brokenBackend struct{}

var errRefused = errors.New("connection refused")

func (brokenBackend) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errRefused
}
func (brokenBackend) Set(context.Context, string, []byte, time.Duration) error {
	return errRefused
}
func (brokenBackend) Delete(context.Context, string) error { return errRefused }

func ExampleSetDefaults() {
	defer memo.ResetDefaults() // back to the built-in defaults
	// Usually in main: every memoized function of the process, including
	// those wrapped at package level before main ran, now uses these.
	memo.SetDefaults(memo.Prefix("shop"), memo.Expire(30*time.Second))
	f := memo.New(fetchUser)
	fmt.Println(f.Key(1))
	// Output: shop:github.com/gomemo/memo_test.fetchUser:1
}
