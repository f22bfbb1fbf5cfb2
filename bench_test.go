package memo_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
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
			f := memo.New(benchUser, memo.WithBackend(memory.New()), memo.WithCodec(codec), memo.Expire(time.Hour))
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
		f := memo.New(benchScore, memo.WithBackend(memory.New()), memo.Expire(time.Hour))
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
		f := memo.New(benchUser, memo.WithBackend(memory.New(memory.MaxEntries(10_000))))
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
