package memo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// BenchUser is the reference value: about 120 bytes of JSON.
type BenchUser struct {
	ID        int64
	Name      string
	Email     string
	Tags      []string
	CreatedAt time.Time
}

func benchUser(ctx context.Context, id int64) (BenchUser, error) {
	return BenchUser{ID: id, Name: "Ada Lovelace", Email: "ada@example.com", Tags: []string{"admin", "math"},
		CreatedAt: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}, nil
}

// BenchmarkHit measures a hit on the in-memory backend, keyed by an int64,
// beside a bare map lookup of the same value in the same run.
func BenchmarkHit(b *testing.B) {
	ctx := context.Background()
	for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
		b.Run(codec.Name(), func(b *testing.B) {
			local, _ := memo.OwnLocalTier(64 << 20)
			f := memo.New(benchUser, local, memo.WithCodec(codec), memo.Expire(time.Hour))
			f.Call(ctx, 42)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Call(ctx, 42); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("map+RWMutex", func(b *testing.B) {
		var mu sync.RWMutex
		m := map[int64]BenchUser{}
		u, _ := benchUser(ctx, 42)
		m[42] = u
		b.ReportAllocs()
		for b.Loop() {
			mu.RLock()
			v := m[42]
			mu.RUnlock()
			_ = v
		}
	})
}

// Score has no pointers, slices or maps: a hit is a plain copy.
type Score struct {
	ID     int64
	Points float64
	Rank   int32
	Active bool
}

func benchScore(ctx context.Context, id int64) (Score, error) {
	return Score{ID: id, Points: 9.5, Rank: 3, Active: true}, nil
}

// BenchmarkHitFlat measures a hit whose result needs no deep copy.
func BenchmarkHitFlat(b *testing.B) {
	ctx := context.Background()
	b.Run("memo", func(b *testing.B) {
		local, _ := memo.OwnLocalTier(64 << 20)
		f := memo.New(benchScore, local, memo.Expire(time.Hour))
		f.Call(ctx, 42)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.Call(ctx, 42); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("map+RWMutex", func(b *testing.B) {
		var mu sync.RWMutex
		m := map[int64]Score{42: {ID: 42}}
		b.ReportAllocs()
		for b.Loop() {
			mu.RLock()
			v := m[42]
			mu.RUnlock()
			_ = v
		}
	})
}

// BenchmarkMiss measures memo's work on a miss (key, encode, envelope,
// store) beside calling fn directly.
func BenchmarkMiss(b *testing.B) {
	ctx := context.Background()
	b.Run("memo", func(b *testing.B) {
		local, _ := memo.OwnLocalTier(8 << 20)
		f := memo.New(benchUser, local)
		b.ReportAllocs()
		var id int64
		for b.Loop() {
			id++
			if _, err := f.Call(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fn", func(b *testing.B) {
		b.ReportAllocs()
		var id int64
		for b.Loop() {
			id++
			benchUser(ctx, id)
		}
	})
}

// BenchmarkHitScale measures hits on stores holding 1,000 to 1,000,000
// entries, with keys drawn uniformly or from a Zipf law (s=1.1, the skew of
// real traffic), beside a bare map+RWMutex holding the same values: what
// the bare map loses to the CPU caches as the set grows, memo loses too;
// the ratio between them is what memo's hit path adds.
func BenchmarkHitScale(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		local, _ := memo.OwnLocalTier(1 << 40)
		f := memo.New(benchUser, local, memo.Expire(time.Hour))
		var mu sync.RWMutex
		m := make(map[int64]BenchUser, n)
		for i := range int64(n) {
			f.Call(ctx, i)
			f.Call(ctx, i)
			m[i], _ = benchUser(ctx, i)
		}
		r := rand.New(rand.NewPCG(1, 2))
		zipf := rand.NewZipf(r, 1.1, 1, uint64(n-1))
		for _, dist := range []string{"uniform", "zipf"} {
			keys := make([]int64, 1<<16)
			for i := range keys {
				if dist == "zipf" {
					keys[i] = int64(zipf.Uint64())
				} else {
					keys[i] = r.Int64N(int64(n))
				}
			}
			b.Run(fmt.Sprintf("%s/entries=%d/memo", dist, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := f.Call(ctx, keys[i&(len(keys)-1)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(fmt.Sprintf("%s/entries=%d/map", dist, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					mu.RLock()
					v := m[keys[i&(len(keys)-1)]]
					mu.RUnlock()
					_ = v
					i++
				}
			})
		}
	}
}
