// Package bench measures memo beside other Go caches on one workload. It is
// a module of its own (github.com/gomemo/memo/bench) so that the peers never
// enter memo's dependencies; its go.mod replaces memo with the working tree.
//
// The benchmarks are in peers_test.go; cmd/table runs them and prints one
// markdown table; cmd/httpserver is the server scripts/bench.sh loads with
// wrk. This file holds what both the benchmarks and the table need: the
// workload's values and what is known of each library.
package bench

import (
	"context"
	"time"
)

// User is the reference value: about 120 bytes of JSON, with a slice
// that a caller could mutate.
type User struct {
	ID        int64
	Name      string
	Email     string
	Tags      []string
	CreatedAt time.Time
}

// NewUser is the value every library caches for id.
func NewUser(id int64) User {
	return User{ID: id, Name: "Ada Lovelace", Email: "ada@example.com", Tags: []string{"admin", "math"},
		CreatedAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
}

// FetchUser is the memoized function: it stands for a slow lookup.
func FetchUser(_ context.Context, id int64) (User, error) { return NewUser(id), nil }

// Score has no pointers, slices or maps: a plain copy is already safe.
type Score struct {
	ID     int64
	Points float64
	Rank   int32
	Active bool
}

// NewScore is the Score every library caches for id.
func NewScore(id int64) Score { return Score{ID: id, Points: 9.5, Rank: 3, Active: true} }

// FetchScore is the memoized function of the Score scenario.
func FetchScore(_ context.Context, id int64) (Score, error) { return NewScore(id), nil }

// Safety says whether a caller may mutate what a hit returned without
// changing what later hits return.
type Safety int

const (
	NA     Safety = iota // not a cache (a raw client, fn itself)
	Safe                 // every hit is a fresh copy
	Unsafe               // hits share the cached value's slices
)

func (s Safety) String() string {
	switch s {
	case Safe:
		return "yes"
	case Unsafe:
		return "no"
	}
	return "n/a"
}

// Lib describes one sub-benchmark: the library and how it was used.
type Lib struct {
	Name   string // for the table
	Safety Safety // checked by TestMutationSafety for the in-memory caches
	Ref    bool   // the memo row the scenario's ratios are taken against
	Raw    bool   // the raw client row remote ratios are taken against
}

// Libs maps each sub-benchmark's name (the part after the scenario) to its
// library. The table prints the sub-benchmarks in this order within each
// scenario.
var Libs = []struct {
	ID string
	Lib
}{
	{"memo-json", Lib{Name: "memo (memo.JSON)", Safety: Safe, Ref: true}},
	{"memo-msgpack", Lib{Name: "memo (memo.Msgpack)", Safety: Safe}},
	{"memo", Lib{Name: "memo", Safety: Safe, Ref: true}},
	{"map-rwmutex", Lib{Name: "map + RWMutex (floor)", Safety: Unsafe}},
	{"otter", Lib{Name: "otter v2 GetIfPresent", Safety: Unsafe}},
	{"otter-ttl", Lib{Name: "otter v2 GetIfPresent, ExpiryWriting TTL", Safety: Unsafe}},
	{"hot", Lib{Name: "samber/hot Get with loader (LRU, TTL)", Safety: Unsafe}},
	{"hot-copyonread", Lib{Name: "samber/hot Get, WithCopyOnRead deep copy", Safety: Safe}},
	{"sturdyc", Lib{Name: "sturdyc GetOrFetch", Safety: Unsafe}},
	{"gocache", Lib{Name: "eko/gocache loadable (go-cache store)", Safety: Unsafe}},
	{"goredis-cache-get", Lib{Name: "go-redis/cache local tier Get", Safety: Safe}},
	{"goredis-cache-once", Lib{Name: "go-redis/cache local tier Once", Safety: Safe}},
	{"raw", Lib{Name: "raw go-redis GET of memo's bytes", Safety: NA, Raw: true}},
	{"memo-redis-json", Lib{Name: "memo on redisbackend (memo.JSON)", Safety: Safe, Ref: true}},
	{"memo-redis-msgpack", Lib{Name: "memo on redisbackend (memo.Msgpack)", Safety: Safe}},
	{"goredis-cache-remote", Lib{Name: "go-redis/cache remote Get (no local tier)", Safety: Safe}},
	{"fn", Lib{Name: "fn called directly", Safety: NA}},
}

// Scenarios maps each benchmark function to its row label, in table order.
// In a PointerFree scenario every cache is mutation-safe: a hit is a value
// copy that shares nothing.
var Scenarios = []struct {
	Bench, Label string
	PointerFree  bool
}{
	{"BenchmarkLocalHit", "in-memory hit, User", false},
	{"BenchmarkFlatHit", "in-memory hit, Score (no pointers)", true},
	{"BenchmarkRemoteHit/serial", "Redis hit, 1 goroutine", false},
	{"BenchmarkRemoteHit/parallel", "Redis hit, 8 goroutines", false},
	{"BenchmarkMiss", "miss, in-memory, User", false},
}
