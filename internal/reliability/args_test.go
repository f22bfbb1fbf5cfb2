package reliability_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// Echo is fn's answer in TestHostileArguments: derived from the argument,
// so that serving one argument's entry to another shows.
type Echo struct {
	Len int
	Sum string
}

func echo(s string) Echo {
	sum := sha256.Sum256([]byte(s))
	return Echo{Len: len(s), Sum: hex.EncodeToString(sum[:])}
}

func hostileStrings() []string {
	return []string{
		"with space", " ", "  ", "new\nline", "\r\nEND\r\n", "get x\r\n", "nul\x00byte", "\x00", "\x00\x00",
		"\xff\xfe invalid UTF-8 \xc3\x28", "\xed\xa0\x80", "tab\tand\vcontrol\x1b", "é", "日本語",
		"", "~", "~tilde", "a:b", ":", "*", "[a-z]?", "%s%n", "a/b", `back\slash`,
		strings.Repeat("k", 200), strings.Repeat("k", 251), strings.Repeat("x", 1<<20),
		strings.Repeat("x", 1<<20-1) + "y",
	}
}

// TestHostileArguments memoizes a function of a string over every backend
// and calls it with hostile arguments (spaces, newlines, memcached protocol
// lines, NULs, invalid UTF-8, glob characters, 1 MiB): every call returns
// the argument's own answer, the second call of each is a hit, and no
// fault is reported.
func TestHostileArguments(t *testing.T) {
	args := hostileStrings()
	for _, tg := range sharedTargets {
		t.Run(tg.name, func(t *testing.T) {
			b := tg.open(t).b
			ctx := context.Background()
			fl := &faults{keep: true}
			runs := 0
			f := memo.New(func(_ context.Context, s string) (Echo, error) { runs++; return echo(s), nil },
				memo.Namespace(namespace("args")), memo.WithBackend(b), memo.Timeout(10*time.Second),
				memo.Expire(time.Minute), memo.OnError(fl.hook))
			keys := map[string]int{}
			for i, s := range args {
				k := f.Key(s)
				if j, dup := keys[k]; dup {
					t.Errorf("arguments %d and %d share key %q", j, i, k)
				}
				keys[k] = i
				if len(k) > memo.MaxKeyLen || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
					t.Errorf("key %q of argument %d is not a legal key", k, i)
				}
			}
			for round := range 2 {
				for i, s := range args {
					got, err := f.Call(ctx, s)
					if err != nil || got != echo(s) {
						t.Errorf("round %d, argument %d (%d bytes %.20q): Call = %+v, %v; want its own answer", round, i, len(s), s, got, err)
					}
				}
			}
			hits := 2*len(args) - runs
			figures(t, "arguments", len(args), "calls", 2*len(args), "fn_runs", runs, "hits", hits,
				"faults_reported", len(fl.errs()))
			if runs != len(args) {
				t.Errorf("fn ran %d times for %d arguments called twice; want %d (every second call a hit)", runs, len(args), len(args))
			}
			for _, err := range fl.errs() {
				t.Errorf("fault reported: %v", err)
			}
		})
	}
}

// Key-collision property test types: equal fmt output for different
// values is the trap a key built with fmt.Sprint falls into.
type pair struct {
	A, B string
}

type nested struct {
	P  pair
	N  int
	F  float64
	S  []string
	M  map[string]string
	I  any
	Pt *string
}

// TestKeysNeverCollide draws many random arguments of several types from a
// small alphabet, so that equal values and values whose fmt output is equal
// (pair{"a b", "c"} and pair{"a", "b c"} both print {a b c}) come up often,
// and checks that two arguments share a key exactly when they are equal.
// With n values per type it compares n(n-1)/2 pairs.
func TestKeysNeverCollide(t *testing.T) {
	const n = 10000 // per type: 50 million pairs each
	r := rand.New(rand.NewPCG(2026, 11))
	alphabet := []string{"", "a", "b", "a b", "b c", "c", " ", ":", "~", "\x00", "\n", "{", "}", "[", "]", "map[", "a:b", "é", "\xff"}
	str := func() string {
		var sb strings.Builder
		for range r.IntN(4) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	strs := func() []string {
		if r.IntN(5) == 0 {
			return nil
		}
		s := make([]string, r.IntN(3))
		for i := range s {
			s[i] = str()
		}
		return s
	}
	maps := func() map[string]string {
		if r.IntN(5) == 0 {
			return nil
		}
		m := map[string]string{}
		for range r.IntN(3) {
			m[str()] = str()
		}
		return m
	}
	anys := []func() any{
		func() any { return nil },
		func() any { return r.IntN(3) },
		func() any { return int64(r.IntN(3)) },
		func() any { return uint8(r.IntN(3)) },
		func() any { return fmt.Sprint(r.IntN(3)) },
		func() any { return float64(r.IntN(3)) },
		func() any { return []string{str()} },
		func() any { return pair{str(), str()} },
	}
	ptr := func() *string {
		if r.IntN(2) == 0 {
			return nil
		}
		s := str()
		return &s
	}
	mem := memory.New()
	t.Run("string", func(t *testing.T) {
		// A string prints as itself: no fmt twins to find.
		checkKeys(t, keyer[string](mem), n, str, false)
	})
	t.Run("struct", func(t *testing.T) {
		checkKeys(t, keyer[pair](mem), n, func() pair { return pair{str(), str()} }, true)
	})
	t.Run("slice", func(t *testing.T) {
		checkKeys(t, keyer[[]string](mem), n, strs, true)
	})
	t.Run("map", func(t *testing.T) {
		checkKeys(t, keyer[map[string]string](mem), n, maps, true)
	})
	t.Run("nested", func(t *testing.T) {
		checkKeys(t, keyer[nested](mem), n, func() nested {
			return nested{P: pair{str(), str()}, N: r.IntN(2), F: float64(r.IntN(2)) / 2, S: strs(), M: maps(),
				I: anys[r.IntN(len(anys))](), Pt: ptr()}
		}, true)
	})
}

func keyer[A any](b memo.Backend) func(A) string {
	f := memo.New(func(context.Context, A) (int, error) { return 0, nil },
		memo.Namespace("collide"), memo.WithBackend(b))
	return f.Key
}

// checkKeys draws n values and checks every pair: equal keys if and only
// if the values are equal (reflect.DeepEqual).
func checkKeys[A any](t *testing.T, key func(A) string, n int, gen func() A, twins bool) {
	byKey := map[string]A{}
	byFmt := map[string][]A{}
	var distinct, fmtTwins int
	for range n {
		v := gen()
		k := key(v)
		if k == "" {
			t.Fatalf("no key for %#v", v)
		}
		if k != key(v) {
			t.Fatalf("the key of %#v is not deterministic", v)
		}
		if old, ok := byKey[k]; ok {
			if !reflect.DeepEqual(old, v) {
				t.Fatalf("different arguments share key %q:\n%#v\n%#v", k, old, v)
			}
			continue
		}
		byKey[k] = v
		distinct++
		// Every earlier distinct value with the same fmt output is a
		// different argument with a different key: the trap avoided.
		fs := fmt.Sprint(v)
		fmtTwins += len(byFmt[fs])
		byFmt[fs] = append(byFmt[fs], v)
	}
	// Equal values must share a key (the other half of the property).
	for k, v := range byKey {
		if key(v) != k {
			t.Fatalf("key of %#v changed", v)
		}
	}
	figures(t, "drawn", n, "distinct", distinct, "pairs_compared", n*(n-1)/2, "collisions", 0,
		"fmt_equal_distinct_pairs", fmtTwins)
	if twins && fmtTwins == 0 {
		t.Errorf("no two distinct values printed alike: the generator misses the case it exists for")
	}
}
