package memo_test

// Freshness: what memo does around an entry's expiry and with fn's errors.
// StaleWhileRevalidate answers at once with an entry that expired a moment
// ago and refreshes it behind the caller; StaleIfError answers with it when
// fn fails; EarlyRefresh refreshes hot entries before they expire;
// NegativeCache and CacheErrors remember not-founds and failures for a
// while; ExpireFunc and ExpireJitter choose each entry's lifetime; Peek
// reads without computing and Set primes the cache. docs/freshness.md says
// what each one does, when to pick which and how they combine. The
// examples below run as tests: their output is checked.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// A hot, slow lookup with every freshness option a web service usually
// wants. Only the first call of each key runs fn here: the stale windows,
// the early refresh and the backoffs come into play as time passes.
func Example_freshness() {
	errNoSuchUser := errors.New("no such user")
	type user struct {
		ID   int64
		Name string
	}
	var runs int
	fetch := func(ctx context.Context, id int64) (user, error) {
		runs++
		if id >= 1000 {
			return user{}, fmt.Errorf("user %d: %w", id, errNoSuchUser)
		}
		return user{ID: id, Name: fmt.Sprintf("user %d", id)}, nil
	}
	getUser := memo.New(fetch, memo.Namespace("example-freshness"), memo.WithBackend(memory.New()),
		memo.Expire(time.Minute),
		memo.ExpireJitter(0.1),                         // entries written together expire apart
		memo.StaleWhileRevalidate(time.Minute),         // up to 1 min past expiry: answer at once, refresh behind
		memo.StaleIfError(time.Hour),                   // up to 1 h past expiry: the old answer beats fn's error
		memo.EarlyRefresh(1),                           // hot keys refreshed before they expire
		memo.NegativeCache(time.Minute, errNoSuchUser), // ids that do not exist: ask again in a minute
		memo.CacheErrors(5*time.Second),                // a failing origin: called once per 5 s per key
	)

	ctx := context.Background()
	for range 2 {
		u, err := getUser.Call(ctx, 42)
		fmt.Println(u.Name, err)
	}
	for range 2 {
		_, err := getUser.Call(ctx, 4242)
		fmt.Println(err, errors.Is(err, errNoSuchUser))
	}
	fmt.Println("runs:", runs)
	// Output:
	// user 42 <nil>
	// user 42 <nil>
	// user 4242: no such user true
	// user 4242: no such user true
	// runs: 2
}

// A bot probing ids that do not exist reaches the database once per id
// and minute, not once per request. Every call gets an error that matches
// the sentinel and reads as fn's did; an adapter using Lookup also learns
// that it came from the cache, and until when it holds.
func ExampleNegativeCache() {
	errNotFound := errors.New("not found")
	var runs int
	find := func(ctx context.Context, id int) (string, error) {
		runs++
		return "", fmt.Errorf("product %d: %w", id, errNotFound)
	}
	f := memo.New(find, memo.Namespace("example-negative"), memo.WithBackend(memory.New()),
		memo.Expire(time.Hour), memo.NegativeCache(time.Minute, errNotFound))

	ctx := context.Background()
	for range 3 {
		_, err := f.Call(ctx, 999)
		fmt.Println(err, errors.Is(err, errNotFound))
	}
	e, err := f.Lookup(ctx, 999, memo.UseCache)
	fmt.Println("Lookup:", err, "hit:", e.Hit, "payload:", len(e.Payload), "expires:", !e.FreshUntil.IsZero())
	fmt.Println("runs:", runs)
	// Output:
	// product 999: not found true
	// product 999: not found true
	// product 999: not found true
	// Lookup: product 999: not found hit: true payload: 0 expires: true
	// runs: 1
}

// A failing origin is called about once per ttl per key. The call that ran
// fn gets fn's error itself; the later ones get the remembered error,
// which matches memo.ErrCached and carries fn's text.
func ExampleCacheErrors() {
	var runs int
	stock := func(ctx context.Context, sku string) (int, error) {
		runs++
		return 0, errors.New("inventory service unavailable")
	}
	f := memo.New(stock, memo.Namespace("example-cache-errors"), memo.WithBackend(memory.New()),
		memo.Expire(time.Minute), memo.CacheErrors(2*time.Second))

	ctx := context.Background()
	for range 3 {
		_, err := f.Call(ctx, "sku-1")
		fmt.Println(err, errors.Is(err, memo.ErrCached))
	}
	fmt.Println("runs:", runs)
	// Output:
	// inventory service unavailable false
	// memo: remembered error: inventory service unavailable true
	// memo: remembered error: inventory service unavailable true
	// runs: 1
}

// Each answer's lifetime chosen from the answer: here an empty result is
// not stored (0 means "do not store"), so the next call asks again.
func ExampleExpireFunc() {
	runs := map[string]int{}
	search := func(ctx context.Context, q string) ([]string, error) {
		runs[q]++
		if q == "gopher" {
			return []string{"gopher plush", "gopher mug"}, nil
		}
		return nil, nil
	}
	f := memo.New(search, memo.Namespace("example-expire-func"), memo.WithBackend(memory.New()),
		memo.ExpireFunc(func(hits []string) time.Duration {
			if len(hits) == 0 {
				return 0 // nothing found: do not store, it may appear soon
			}
			return 10 * time.Minute
		}))

	ctx := context.Background()
	for range 2 {
		f.Call(ctx, "gopher")
		f.Call(ctx, "unicorn")
	}
	fmt.Println("gopher runs:", runs["gopher"], "unicorn runs:", runs["unicorn"])
	// Output: gopher runs: 1 unicorn runs: 2
}

// Each entry's lifetime is shortened by a random fraction below 10%, so
// that entries written together (a warm-up, a batch) do not all expire in
// the same second.
func ExampleExpireJitter() {
	double := func(ctx context.Context, x int) (int, error) { return 2 * x, nil }
	f := memo.New(double, memo.Namespace("example-jitter"), memo.WithBackend(memory.New()),
		memo.Expire(time.Minute), memo.ExpireJitter(0.1))

	e, err := f.Lookup(context.Background(), 21, memo.UseCache)
	if err != nil {
		fmt.Println(err)
		return
	}
	life := e.FreshUntil.Sub(e.StoredAt)
	fmt.Println("lifetime in (54s, 1m]:", life > 54*time.Second && life <= time.Minute)
	// Output: lifetime in (54s, 1m]: true
}

// Peek reads the cache without ever running fn: ok is false until a fresh
// answer is stored.
func ExampleFunc_Peek() {
	var runs int
	price := func(ctx context.Context, sku string) (int, error) { runs++; return 995, nil }
	f := memo.New(price, memo.Namespace("example-peek"), memo.WithBackend(memory.New()), memo.Expire(time.Minute))

	ctx := context.Background()
	v, ok, err := f.Peek(ctx, "sku-1")
	fmt.Println(v, ok, err)
	f.Call(ctx, "sku-1")
	v, ok, err = f.Peek(ctx, "sku-1")
	fmt.Println(v, ok, err)
	fmt.Println("runs:", runs)
	// Output:
	// 0 false <nil>
	// 995 true <nil>
	// runs: 1
}

// After a write, Set primes the cache with the new answer rather than
// leaving the next caller to compute it (Forget would). It also wins over a
// computation of the old answer already under way in the process.
func ExampleFunc_Set() {
	db := map[int64]string{1: "Ada"}
	var runs int
	name := func(ctx context.Context, id int64) (string, error) { runs++; return db[id], nil }
	f := memo.New(name, memo.Namespace("example-set"), memo.WithBackend(memory.New()), memo.Expire(time.Hour))

	ctx := context.Background()
	n, _ := f.Call(ctx, 1)
	fmt.Println(n)

	db[1] = "Ada Lovelace" // the write
	if err := f.Set(ctx, 1, db[1]); err != nil {
		fmt.Println(err)
	}
	n, _ = f.Call(ctx, 1)
	fmt.Println(n, "runs:", runs)
	// Output:
	// Ada
	// Ada Lovelace runs: 1
}
