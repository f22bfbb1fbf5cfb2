package memo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// keyOf builds the key of a the way New and Call do: the kind decided by
// keyKindOf for A, then buildKey.
func keyOf[A any](a A) (string, error) {
	kind, err := keyKindOf(reflect.TypeFor[A]())
	if err != nil {
		return "", err
	}
	return buildKey("ns", kind, nil, a)
}

// keyPair returns a function that keys x and y, both of type A.
func keyPair[A any](x, y A) func() (kx, ky string, err error) {
	return func() (string, string, error) {
		kx, err := keyOf(x)
		if err != nil {
			return "", "", fmt.Errorf("Key(%v): %w", x, err)
		}
		ky, err := keyOf(y)
		if err != nil {
			return "", "", fmt.Errorf("Key(%v): %w", y, err)
		}
		return kx, ky, nil
	}
}

// Types whose identity lives in unexported fields or in methods.
type (
	hidden struct{ a, b int }
	inner  struct{ N int }
	promo  struct {
		inner
		X int
	}
	promoTime struct {
		*time.Time
		ID int
	}
	// ptrKeyer declares MemoKey on *T: it counts for a T argument too.
	ptrKeyer struct{ Org, User, cache string }
	// ptrText declares MarshalText on *T.
	ptrText struct{ v int }
	// promoKeyer gets MemoKey only by promotion from an embedded field:
	// keying it by MemoKey would drop Extra.
	promoKeyer struct {
		valKeyer
		Extra int
	}
	valKeyer struct{ ID string }
	// shadowKeyer embeds a Keyer and declares its own MemoKey, which wins.
	shadowKeyer struct {
		valKeyer
		Extra int
	}
	level int
)

func (k *ptrKeyer) MemoKey() string             { return k.Org + "/" + k.User }
func (p *ptrText) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "t%d", p.v), nil }
func (k valKeyer) MemoKey() string              { return "v-" + k.ID }
func (k shadowKeyer) MemoKey() string           { return fmt.Sprintf("own-%s-%d", k.ID, k.Extra) }
func (l level) MarshalText() ([]byte, error)    { return []byte("L" + fmt.Sprint(int(l)%10)), nil }

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

func TestKeyDistinct(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	paris := time.FixedZone("CEST", 2*3600)
	tests := []struct {
		name string
		keys func() (string, string, error)
	}{
		{"*big.Int", keyPair(big.NewInt(1000), big.NewInt(42))},
		{"big.Int", keyPair(*big.NewInt(1000), *big.NewInt(42))},
		{"big.Int sign", keyPair(big.NewInt(-5), big.NewInt(5))},
		{"big.Int huge", keyPair(bigInt("123456789012345678901234567890"), bigInt("123456789012345678901234567891"))},
		{"*regexp.Regexp", keyPair(regexp.MustCompile("a+"), regexp.MustCompile("b+"))},
		{"unexported fields", keyPair(hidden{1, 2}, hidden{3, 4})},
		{"*unexported fields", keyPair(&hidden{1, 2}, &hidden{1, 3})},
		{"promoted from unexported embedded", keyPair(promo{inner{1}, 0}, promo{inner{2}, 0})},
		{"promoted MarshalText: ID", keyPair(promoTime{&t0, 1}, promoTime{&t0, 2})},
		{"promoted MarshalText: nil", keyPair(promoTime{nil, 1}, promoTime{&t0, 1})},
		{"promoted MemoKey: Extra", keyPair(promoKeyer{valKeyer{"a"}, 1}, promoKeyer{valKeyer{"a"}, 2})},
		{"own MemoKey over embedded", keyPair(shadowKeyer{valKeyer{"a"}, 1}, shadowKeyer{valKeyer{"a"}, 2})},
		{"*T MemoKey on T", keyPair(ptrKeyer{"acme", "bob", ""}, ptrKeyer{"acme", "eve", ""})},
		{"*T MemoKey nested", keyPair([]ptrKeyer{{"acme", "bob", ""}}, []ptrKeyer{{"acme", "eve", ""}})},
		{"*T MarshalText on T", keyPair(ptrText{1}, ptrText{2})},
		{"*T MarshalText nested", keyPair(map[string]ptrText{"k": {1}}, map[string]ptrText{"k": {2}})},
		{"unexported time", keyPair(struct{ t time.Time }{t0}, struct{ t time.Time }{t0.Add(1)})},
		{"url.Userinfo", keyPair(url.UserPassword("a", "1"), url.UserPassword("a", "2"))},
		{"time zone, top level", keyPair(t0, t0.In(paris))},
		{"time zone, struct", keyPair(struct{ T time.Time }{t0}, struct{ T time.Time }{t0.In(paris)})},
		{"time zone, slice", keyPair([]time.Time{t0}, []time.Time{t0.In(paris)})},
		{"time zone, map", keyPair(map[int]time.Time{1: t0}, map[int]time.Time{1: t0.In(paris)})},
		{"int and string in any", keyPair[any](1, "1")},
		{"int8 and int in any", keyPair[any](int8(1), 1)},
		{"+Inf and -Inf", keyPair(math.Inf(1), math.Inf(-1))},
		{"NaN and 0", keyPair(math.NaN(), 0)},
		{"nested NaN and 0", keyPair([]float64{math.NaN()}, []float64{0})},
		{"complex", keyPair(complex(1, 2), complex(2, 1))},
		{"array", keyPair([2]int16{1, 2}, [2]int16{2, 1})},
		{"named int with MarshalText", keyPair(level(1), level(2))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kx, ky, err := tt.keys()
			if err != nil {
				t.Fatal(err)
			}
			if kx == ky {
				t.Errorf("Key(x) = Key(y) = %q, want different keys", kx)
			}
		})
	}
}

func TestKeySame(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	negZero := math.Copysign(0, -1)
	otherNaN := math.Float64frombits(0x7ff8_0000_dead_beef)
	tests := []struct {
		name string
		keys func() (string, string, error)
	}{
		{"-0 and 0, float64", keyPair(negZero, 0.0)},
		{"-0 and 0, float32", keyPair(float32(negZero), float32(0))},
		{"-0 and 0, struct", keyPair(struct{ F float64 }{negZero}, struct{ F float64 }{0})},
		{"-0 and 0, slice", keyPair([]float64{negZero}, []float64{0})},
		{"-0 and 0, map", keyPair(map[string]float64{"a": negZero}, map[string]float64{"a": 0})},
		{"-0 and 0, complex", keyPair(complex(negZero, negZero), complex(0, 0))},
		{"NaNs, float64", keyPair(math.NaN(), otherNaN)},
		{"NaNs, float32", keyPair(float32(math.NaN()), math.Float32frombits(0x7fc0_0123))},
		{"NaNs, struct", keyPair(struct{ F float64 }{math.NaN()}, struct{ F float64 }{otherNaN})},
		{"NaNs, any", keyPair[any](math.NaN(), otherNaN)},
		{"one offset, two zone names", keyPair(t0.In(time.FixedZone("A", 3600)), t0.In(time.FixedZone("B", 3600)))},
		{"monotonic reading", keyPair(time.Unix(5, 0), time.Unix(5, 0).Round(0))},
		{"*big.Int built two ways", keyPair(big.NewInt(7), bigInt("7"))},
		{"big.Int zero", keyPair(*new(big.Int), *big.NewInt(0))},
		{"*T MemoKey ignores cache", keyPair(ptrKeyer{"acme", "bob", "x"}, ptrKeyer{"acme", "bob", "y"})},
		{"named int by MarshalText", keyPair([]level{1}, []level{11})},
		{"maps, insertion order", keyPair(map[string]int{"a": 1, "b": 2, "c": 3}, map[string]int{"c": 3, "b": 2, "a": 1})},
		{"tagged field left out", keyPair(struct {
			A int
			b int `memo:"-"`
		}{1, 2}, struct {
			A int
			b int `memo:"-"`
		}{1, 3})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kx, ky, err := tt.keys()
			if err != nil {
				t.Fatal(err)
			}
			if kx != ky {
				t.Errorf("Key(x) = %q, Key(y) = %q, want one key", kx, ky)
			}
		})
	}
}

// TestKeyFloatRule checks that floats follow one rule at top level and
// inside a struct, a slice, a map and an interface: x and y share a key
// exactly when x == y or both are NaN.
func TestKeyFloatRule(t *testing.T) {
	negZero := math.Copysign(0, -1)
	vals := []float64{0, negZero, math.NaN(), math.Float64frombits(0x7ff0_0000_0000_0001), math.Inf(1), math.Inf(-1), 1, -1, 0.1, math.SmallestNonzeroFloat64}
	type S struct{ F float64 }
	shapes := map[string]func(float64) (string, error){
		"top":        func(f float64) (string, error) { return keyOf(f) },
		"float32":    func(f float64) (string, error) { return keyOf(float32(f)) },
		"struct":     func(f float64) (string, error) { return keyOf(S{f}) },
		"slice":      func(f float64) (string, error) { return keyOf([]float64{f}) },
		"map":        func(f float64) (string, error) { return keyOf(map[int]float64{1: f}) },
		"any":        func(f float64) (string, error) { return keyOf[any](f) },
		"unexported": func(f float64) (string, error) { return keyOf(struct{ f float64 }{f}) },
	}
	for name, key := range shapes {
		for _, x := range vals {
			for _, y := range vals {
				if name == "float32" && float32(x) != float32(y) && x == y {
					continue
				}
				want := x == y || math.IsNaN(x) && math.IsNaN(y)
				if name == "float32" {
					want = float32(x) == float32(y) || math.IsNaN(x) && math.IsNaN(y)
				}
				kx, err := key(x)
				if err != nil {
					t.Fatalf("%s: Key(%v): %v", name, x, err)
				}
				ky, _ := key(y)
				if got := kx == ky; got != want {
					t.Errorf("%s: Key(%v) = %q, Key(%v) = %q, want same key: %v", name, x, kx, y, ky, want)
				}
			}
		}
	}
}

type (
	panicText   struct{ N int }
	panicPtr    struct{ N int }
	panicKeyer  struct{ N int }
	panicPKeyer struct{ N int }
	errText     struct{ N int }
	cycNode     struct {
		Next *cycNode
		n    int
	}
)

func (panicText) MarshalText() ([]byte, error) { panic("boom") }
func (*panicPtr) MarshalText() ([]byte, error) { panic("boom") }
func (panicKeyer) MemoKey() string             { panic("boom") }
func (*panicPKeyer) MemoKey() string           { panic("boom") }
func (errText) MarshalText() ([]byte, error)   { return nil, errors.New("no text") }

// TestKeyNeverPanics: key building returns an error (or a key) for values
// whose methods panic, nil embedded pointers and cycles; it never panics.
func TestKeyNeverPanics(t *testing.T) {
	cyc := &cycNode{n: 1}
	cyc.Next = cyc
	cycSlice := []any{nil}
	cycSlice[0] = cycSlice
	cycMap := map[string]any{}
	cycMap["m"] = cycMap
	tests := []struct {
		name    string
		key     func() (string, error)
		wantErr bool
	}{
		{"nil embedded *time.Time", func() (string, error) { return keyOf(promoTime{nil, 1}) }, false},
		{"nil embedded *time.Time, nested", func() (string, error) { return keyOf([]promoTime{{nil, 1}}) }, false},
		{"MarshalText panics", func() (string, error) { return keyOf(panicText{1}) }, true},
		{"MarshalText panics, nested", func() (string, error) { return keyOf(struct{ P panicText }{}) }, true},
		{"*T MarshalText panics", func() (string, error) { return keyOf(panicPtr{1}) }, true},
		{"*T MarshalText panics, unexported", func() (string, error) { return keyOf(struct{ p panicPtr }{}) }, true},
		{"MemoKey panics", func() (string, error) { return keyOf(panicKeyer{1}) }, true},
		{"MemoKey panics, nested", func() (string, error) { return keyOf([]panicKeyer{{1}}) }, true},
		{"*T MemoKey panics", func() (string, error) { return keyOf(panicPKeyer{1}) }, true},
		{"*T MemoKey panics, *T", func() (string, error) { return keyOf(&panicPKeyer{1}) }, true},
		{"*T MemoKey panics, nested", func() (string, error) { return keyOf(map[int]panicPKeyer{1: {1}}) }, true},
		{"MarshalText fails", func() (string, error) { return keyOf(errText{1}) }, true},
		{"nil Keyer interface", func() (string, error) { return keyOf[Keyer](nil) }, true},
		{"cyclic pointer", func() (string, error) { return keyOf(cyc) }, true},
		{"cyclic slice", func() (string, error) { return keyOf(cycSlice) }, true},
		{"cyclic map", func() (string, error) { return keyOf(cycMap) }, true},
		{"func in any", func() (string, error) { return keyOf[any](func() {}) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				k   string
				err error
			)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("key building panicked: %v", r)
					}
				}()
				k, err = tt.key()
			}()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Key = %q, %v; want error: %v", k, err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "memo: ") {
				t.Errorf("error %q does not start with \"memo: \"", err)
			}
		})
	}
}

// Types only looked at through reflection: their fields are never read.
type (
	withChan  struct{ c chan int } //lint:ignore U1000 read through reflection
	withMutex struct {
		mu sync.Mutex //lint:ignore U1000 read through reflection
		N  int
	}
	withFunc struct{ f func() } //lint:ignore U1000 read through reflection
	tagged   struct {
		c chan int `memo:"-"` //lint:ignore U1000 read through reflection
		N int
	}
	keyedChan struct{ c chan int } //lint:ignore U1000 read through reflection
	wrappedMu struct{ *withMutex }
)

func (keyedChan) MemoKey() string { return "k" }

func TestKeyKindOf(t *testing.T) {
	tests := []struct {
		typ     reflect.Type
		want    keyKind
		wantErr bool
	}{
		{reflect.TypeFor[int64](), keyInt, false},
		{reflect.TypeFor[string](), keyString, false},
		{reflect.TypeFor[float32](), keyFloat, false},
		{reflect.TypeFor[level](), keyHash, false}, // MarshalText wins over the kind
		{reflect.TypeFor[valKeyer](), keyKeyer, false},
		{reflect.TypeFor[*valKeyer](), keyKeyer, false},
		{reflect.TypeFor[ptrKeyer](), keyKeyerPtr, false},
		{reflect.TypeFor[*ptrKeyer](), keyKeyer, false},
		{reflect.TypeFor[promoKeyer](), keyHash, false},
		{reflect.TypeFor[shadowKeyer](), keyKeyer, false},
		{reflect.TypeFor[hidden](), keyHash, false},
		{reflect.TypeFor[big.Int](), keyHash, false},
		{reflect.TypeFor[keyedChan](), keyKeyer, false},
		{reflect.TypeFor[tagged](), keyHash, false},
		{reflect.TypeFor[withChan](), 0, true},
		{reflect.TypeFor[withMutex](), 0, true},
		{reflect.TypeFor[*wrappedMu](), 0, true},
		{reflect.TypeFor[withFunc](), 0, true},
		{reflect.TypeFor[[]func()](), 0, true},
	}
	for _, tt := range tests {
		got, err := keyKindOf(tt.typ)
		if tt.wantErr {
			if err == nil {
				t.Errorf("keyKindOf(%v) = %v, want an error", tt.typ, got)
				continue
			}
			if tt.typ.Kind() == reflect.Struct || tt.typ.Kind() == reflect.Pointer {
				for _, hint := range []string{"Keyer", "KeyFunc", `memo:"-"`} {
					if !strings.Contains(err.Error(), hint) {
						t.Errorf("keyKindOf(%v) error %q does not mention %s", tt.typ, err, hint)
					}
				}
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("keyKindOf(%v) = %v, %v; want %v", tt.typ, got, err, tt.want)
		}
	}
}

// TestAppendKeyAllocs: the scalar kinds build their key in the caller's
// buffer without allocating; the hit path depends on it.
func TestAppendKeyAllocs(t *testing.T) {
	var buf [MaxKeyLen + 8]byte
	tests := map[string]func(){
		"int64":   func() { _, _ = appendKey(buf[:0], "memo:ns", keyInt, nil, int64(-123456)) },
		"int8":    func() { _, _ = appendKey(buf[:0], "memo:ns", keyInt, nil, int8(-3)) },
		"uint32":  func() { _, _ = appendKey(buf[:0], "memo:ns", keyUint, nil, uint32(7)) },
		"string":  func() { _, _ = appendKey(buf[:0], "memo:ns", keyString, nil, "alice") },
		"hashed":  func() { _, _ = appendKey(buf[:0], "memo:ns", keyString, nil, "a b") },
		"bool":    func() { _, _ = appendKey(buf[:0], "memo:ns", keyBool, nil, true) },
		"float64": func() { _, _ = appendKey(buf[:0], "memo:ns", keyFloat, nil, math.Copysign(0, -1)) },
	}
	for name, f := range tests {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("appendKey(%s) allocates %v times, want 0", name, n)
		}
	}
}

func BenchmarkAppendKey(b *testing.B) {
	var buf [MaxKeyLen + 8]byte
	b.Run("int64", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_, _ = appendKey(buf[:0], "memo:bench", keyInt, nil, int64(i))
		}
	})
	b.Run("string", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = appendKey(buf[:0], "memo:bench", keyString, nil, "alice@example.com")
		}
	})
	type query struct {
		Tenant string
		Tags   []string
		Limit  int
		Since  time.Time
		Filter map[string]string
	}
	q := query{Tenant: "acme", Tags: []string{"a", "bb", "ccc"}, Limit: 50, Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Filter: map[string]string{"x": "1", "y": "2"}}
	kind, err := keyKindOf(reflect.TypeOf(q))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("struct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = appendKey(buf[:0], "memo:bench", kind, nil, q)
		}
	})
}

// Functions for the default namespace tests.
type tenant struct{ name string }

func (t *tenant) Get(_ context.Context, id int) (string, error) { return t.name, nil }

type genTenant[T any] struct{}

func (genTenant[T]) Get(context.Context, int) (string, error) { return "", nil }

func plainFn(context.Context, int) (string, error) { return "", nil }

func genFn[T any](context.Context, T) (string, error) { return "", nil }

func TestDefaultNamespace(t *testing.T) {
	a, b := &tenant{"a"}, &tenant{"b"}
	if got, want := defaultNamespace(plainFn), "github.com/gomemo/memo.plainFn"; got != want {
		t.Errorf("defaultNamespace(plainFn) = %q, want %q", got, want)
	}
	panics := map[string]any{
		"method value a.Get":         a.Get,
		"method value b.Get":         b.Get,
		"generic genFn[int]":         genFn[int],
		"generic genFn[string]":      genFn[string],
		"generic type method value":  genTenant[int]{}.Get,
		"closure":                    func(context.Context, int) (string, error) { return "", nil },
		"reflect.MakeFunc":           reflect.MakeFunc(reflect.TypeOf(plainFn), func([]reflect.Value) []reflect.Value { return nil }).Interface(),
		"method value via interface": getter(a).Get,
	}
	for name, fn := range panics {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				msg := fmt.Sprint(r)
				if r == nil {
					t.Fatalf("defaultNamespace(%s) did not panic", name)
				}
				if !strings.HasPrefix(msg, "memo: ") || !strings.Contains(msg, "memo.Namespace") {
					t.Errorf("panic %q: want a \"memo: \" message that asks for memo.Namespace", msg)
				}
			}()
			ns := defaultNamespace(fn)
			t.Errorf("defaultNamespace(%s) = %q", name, ns)
		})
	}
}

type getter interface {
	Get(context.Context, int) (string, error)
}

// TestNewMethodValues: New panics instead of letting two receivers, or two
// instantiations, share a namespace; with a Namespace each keeps its own.
func TestNewMethodValues(t *testing.T) {
	a, b := &tenant{"a"}, &tenant{"b"}
	for name, f := range map[string]func(){
		"New(a.Get)":         func() { New(a.Get) },
		"New(genFn[int])":    func() { New(genFn[int]) },
		"New(genFn[string])": func() { New(genFn[string]) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "memo: ") {
					t.Errorf("%s: recovered %v, want a memo: panic", name, r)
				}
			}()
			f()
		}()
	}
	fa, fb := New(a.Get, Namespace("tenant-a")), New(b.Get, Namespace("tenant-b"))
	if ka, kb := fa.Key(1), fb.Key(1); ka == kb {
		t.Errorf("Key(1) = %q for both tenants, want different keys", ka)
	}
}

func TestNamespacePrefixLimits(t *testing.T) {
	ok := map[string]func(){
		"Namespace(max)": func() { Namespace(strings.Repeat("n", maxNamespace)) },
		"Prefix(max)":    func() { Prefix(strings.Repeat("p", maxPrefix)) },
		"Prefix()":       func() { Prefix("") },
	}
	for name, f := range ok {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s panicked: %v", name, r)
				}
			}()
			f()
		}()
	}
	bad := map[string]struct {
		f    func()
		want string
	}{
		"Namespace(max+1)": {func() { Namespace(strings.Repeat("n", maxNamespace+1)) }, "memo: Namespace("},
		"Prefix(max+1)":    {func() { Prefix(strings.Repeat("p", maxPrefix+1)) }, "memo: Prefix("},
		"Namespace()":      {func() { Namespace("") }, "memo: Namespace("},
		"Namespace(space)": {func() { Namespace("a b") }, "memo: Namespace("},
		"Prefix(ctl)":      {func() { Prefix("a\x7f") }, "memo: Prefix("},
	}
	for name, tt := range bad {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), tt.want) {
					t.Errorf("%s: recovered %v, want a panic starting %q", name, r, tt.want)
				}
			}()
			tt.f()
		}()
	}
	// The longest prefix and namespace leave room for every id.
	ns := strings.Repeat("p", maxPrefix) + ":" + strings.Repeat("n", maxNamespace)
	for _, a := range []string{strings.Repeat("x", 300), "a b", strings.Repeat("y", MaxKeyLen)} {
		k, err := buildKey(ns, keyString, nil, a)
		if err != nil || len(k) > MaxKeyLen {
			t.Errorf("Key(%.10q) = %q (%d bytes), %v; want at most %d bytes", a, k, len(k), err, MaxKeyLen)
		}
	}
	for _, a := range []any{hidden{1, 2}, math.MinInt64} {
		k, err := buildKey(ns, keyHash, nil, a)
		if err != nil || len(k) > MaxKeyLen {
			t.Errorf("Key(%v) = %q (%d bytes), %v; want at most %d bytes", a, k, len(k), err, MaxKeyLen)
		}
	}
}

// Fuzz types: unexported and embedded fields, a *T Keyer, a promoted
// MarshalText, and everything nested.
type (
	fzInner struct {
		a int8
		B string
	}
	fzEmb struct {
		fzInner
		X int
		p *int
	}
	// fzKeyer's MemoKey (on *T) ignores case: two fzKeyers whose names
	// differ only in case are one argument.
	fzKeyer struct{ name string }
	fzPromo struct {
		*time.Time
		ID int
	}
	fzAll struct {
		I    int64
		U    uint16
		F    float64
		F32  float32
		C    complex64
		S    string
		B    bool
		T    time.Time
		Big  *big.Int
		P    *int
		Sl   []float64
		M    map[string]float64
		Arr  [2]int16
		E    fzEmb
		u    uint32
		tm   time.Time
		Any  any
		Nest []map[int8][]*fzInner
		K    fzKeyer
		Pr   fzPromo
		Skip int `memo:"-"`
	}
)

func (k *fzKeyer) MemoKey() string { return strings.ToLower(k.name) }

// fz draws values from fuzz bytes; past the end it reads zeros. rev builds
// maps in reverse insertion order.
type fz struct {
	b   []byte
	rev bool
}

func (f *fz) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fz) n(max int) int { return int(f.byte()) % max }

func (f *fz) u64() uint64 {
	var n uint64
	for range 8 {
		n = n<<8 | uint64(f.byte())
	}
	return n
}

// str draws short strings from a small alphabet, so that mutations often
// give equal or confusable strings.
func (f *fz) str() string {
	const alphabet = "aAb :~\xff\x00"
	b := make([]byte, f.n(5))
	for i := range b {
		b[i] = alphabet[f.n(len(alphabet))]
	}
	return string(b)
}

func (f *fz) float() float64 {
	switch f.n(12) {
	case 0:
		return 0
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return math.NaN()
	case 3:
		return math.Float64frombits(0xfff0_0000_0000_0000 | f.u64()&0xffff | 1) // another NaN
	case 4:
		return math.Inf(1)
	case 5:
		return math.Inf(-1)
	case 6:
		return 1
	case 7:
		return -1
	case 8:
		return math.SmallestNonzeroFloat64
	}
	return math.Float64frombits(f.u64())
}

var fzZones = []*time.Location{
	time.UTC,
	time.FixedZone("A", 3600),
	time.FixedZone("B", 3600), // A's offset under another name
	time.FixedZone("UTC", 0),  // UTC's offset under another Location
	time.FixedZone("C", -(5*3600 + 30*60)),
}

func (f *fz) time() time.Time {
	sec := int64(f.n(4)) * 1800 // one instant often lands in two zones
	nsec := []int{0, 1, 999_999_999}[f.n(3)]
	t := time.Unix(1_800_000_000+sec, int64(nsec))
	return t.In(fzZones[f.n(len(fzZones))])
}

func (f *fz) bigInt() *big.Int {
	if f.n(5) == 0 {
		return nil
	}
	v := int64(f.n(7)) - 3
	if f.byte()&1 == 0 {
		return big.NewInt(v)
	}
	n, _ := new(big.Int).SetString(fmt.Sprint(v)+"000000000000000000000", 10)
	return n.Div(n, bigInt("1000000000000000000000"))
}

func (f *fz) intPtr() *int {
	if f.byte()&1 == 0 {
		return nil
	}
	n := f.n(3)
	return &n
}

func (f *fz) any() any {
	switch f.n(6) {
	case 0:
		return nil
	case 1:
		return f.n(3)
	case 2:
		return int8(f.n(3))
	case 3:
		return f.str()
	case 4:
		return f.float()
	}
	return fzInner{int8(f.n(3)), f.str()}
}

func fzMap[K comparable, V any](f *fz, key func() K, val func() V) map[K]V {
	switch f.n(4) {
	case 0:
		return nil
	case 1:
		return map[K]V{}
	}
	n := f.n(4)
	ks, vs := make([]K, n), make([]V, n)
	for i := range n {
		ks[i], vs[i] = key(), val()
	}
	m := make(map[K]V, n)
	for i := range n {
		if f.rev {
			i = n - 1 - i
		}
		m[ks[i]] = vs[i]
	}
	return m
}

func fzSlice[T any](f *fz, elem func() T) []T {
	if f.n(4) == 0 {
		return nil
	}
	s := make([]T, f.n(4))
	for i := range s {
		s[i] = elem()
	}
	return s
}

func (f *fz) inner() fzInner { return fzInner{int8(f.n(3)), f.str()} }

func (f *fz) promo() fzPromo {
	p := fzPromo{ID: f.n(3)}
	if f.byte()&1 == 1 {
		t := f.time()
		p.Time = &t
	}
	return p
}

func (f *fz) all() fzAll {
	return fzAll{
		I:   int64(f.u64() >> 60),
		U:   uint16(f.n(3)),
		F:   f.float(),
		F32: float32(f.float()),
		C:   complex(float32(f.float()), float32(f.float())),
		S:   f.str(),
		B:   f.byte()&1 == 1,
		T:   f.time(),
		Big: f.bigInt(),
		P:   f.intPtr(),
		Sl:  fzSlice(f, f.float),
		M:   fzMap(f, f.str, f.float),
		Arr: [2]int16{int16(f.n(3)), int16(f.n(3))},
		E:   fzEmb{f.inner(), f.n(3), f.intPtr()},
		u:   uint32(f.n(3)),
		tm:  f.time(),
		Any: f.any(),
		Nest: fzSlice(f, func() map[int8][]*fzInner {
			return fzMap(f, func() int8 { return int8(f.n(3)) }, func() []*fzInner {
				return fzSlice(f, func() *fzInner {
					if f.byte()&1 == 0 {
						return nil
					}
					in := f.inner()
					return &in
				})
			})
		}),
		K:    fzKeyer{[]string{"x", "X", "y"}[f.n(3)]},
		Pr:   f.promo(),
		Skip: f.n(3),
	}
}

// ruleEqual is the key rule written independently of key.go: two arguments
// share a key exactly when they are equal under it.
var ruleEqual = []cmp.Option{
	cmp.Exporter(func(reflect.Type) bool { return true }), // every field counts
	cmpopts.EquateNaNs(),                  // -0 == 0 already
	cmpopts.IgnoreFields(fzAll{}, "Skip"), // memo:"-"
	cmp.Comparer(func(a, b complex64) bool { return floatRule(real(a), real(b)) && floatRule(imag(a), imag(b)) }),
	cmp.Comparer(func(a, b complex128) bool { return floatRule(real(a), real(b)) && floatRule(imag(a), imag(b)) }),
	cmp.Comparer(func(a, b time.Time) bool { // instant and offset
		_, oa := a.Zone()
		_, ob := b.Zone()
		return a.Equal(b) && oa == ob
	}),
	cmp.Comparer(func(a, b *big.Int) bool { return a == nil && b == nil || a != nil && b != nil && a.Cmp(b) == 0 }),
	cmp.Comparer(func(a, b *regexp.Regexp) bool { return a.String() == b.String() }), // its MarshalText
	cmp.Comparer(func(a, b fzKeyer) bool { return strings.EqualFold(a.name, b.name) }),
}

func floatRule[F float32 | float64](a, b F) bool { return a == b || a != a && b != b }

// fuzzPair checks that the values drawn from x and y share a key exactly
// when they are equal under the rule.
func fuzzPair[A any](t *testing.T, x, y []byte, gen func(*fz) A) {
	t.Helper()
	a, b := gen(&fz{b: x}), gen(&fz{b: y, rev: true})
	ka, err := keyOf(a)
	if err != nil {
		t.Fatalf("Key(%v): %v", a, err)
	}
	kb, err := keyOf(b)
	if err != nil {
		t.Fatalf("Key(%v): %v", b, err)
	}
	if eq := cmp.Equal(a, b, ruleEqual...); eq != (ka == kb) {
		t.Fatalf("%T: Key(%v) = %q, Key(%v) = %q; equal under the rule: %v %s", a, a, ka, b, kb, eq, cmp.Diff(a, b, ruleEqual...))
	}
}

// FuzzCanonKey draws two values of one of many argument types, the second
// from the first's bytes with one byte changed, and checks that they share
// a key exactly when they are equal under the documented rule (ruleEqual).
// data[0] picks the type, data[1] and data[2] the byte changed and its new
// value.
func FuzzCanonKey(f *testing.F) {
	for sel := range byte(24) {
		f.Add([]byte{sel, 0, 0})
		f.Add([]byte{sel, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		f.Add([]byte{sel, 4, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		sel, pos, val := data[0], int(data[1]), data[2]
		x := data[3:]
		y := bytes.Clone(x)
		if pos < len(y) {
			y[pos] = val
		}
		switch sel % 24 {
		case 0:
			fuzzPair(t, x, y, func(f *fz) int64 { return int64(f.u64()) })
		case 1:
			fuzzPair(t, x, y, (*fz).str)
		case 2:
			fuzzPair(t, x, y, (*fz).float)
		case 3:
			fuzzPair(t, x, y, func(f *fz) float32 { return float32(f.float()) })
		case 4:
			fuzzPair(t, x, y, (*fz).time)
		case 5:
			fuzzPair(t, x, y, (*fz).bigInt)
		case 6:
			fuzzPair(t, x, y, func(f *fz) []string { return fzSlice(f, f.str) })
		case 7:
			fuzzPair(t, x, y, func(f *fz) map[string]int { return fzMap(f, f.str, func() int { return f.n(3) }) })
		case 8:
			fuzzPair(t, x, y, (*fz).all)
		case 9:
			fuzzPair(t, x, y, func(f *fz) *fzAll {
				if f.byte()&1 == 0 {
					return nil
				}
				a := f.all()
				return &a
			})
		case 10:
			fuzzPair(t, x, y, func(f *fz) [3]float64 { return [3]float64{f.float(), f.float(), f.float()} })
		case 11:
			fuzzPair(t, x, y, (*fz).any)
		case 12:
			fuzzPair(t, x, y, func(f *fz) complex128 { return complex(f.float(), f.float()) })
		case 13:
			fuzzPair(t, x, y, func(f *fz) []byte { return []byte(f.str()) })
		case 14:
			fuzzPair(t, x, y, func(f *fz) bool { return f.byte()&1 == 1 })
		case 15:
			fuzzPair(t, x, y, func(f *fz) *regexp.Regexp {
				p := []string{"a+", "b+", "a|b", "[ab]c"}[f.n(4)]
				if f.byte()&1 == 0 {
					return regexp.MustCompile(p)
				}
				return regexp.MustCompilePOSIX(p) // MarshalText does not tell
			})
		case 16:
			fuzzPair(t, x, y, (*fz).promo)
		case 17:
			fuzzPair(t, x, y, func(f *fz) fzEmb { return fzEmb{f.inner(), f.n(3), f.intPtr()} })
		case 18:
			fuzzPair(t, x, y, func(f *fz) big.Int {
				if n := f.bigInt(); n != nil {
					return *n
				}
				return big.Int{}
			})
		case 19:
			fuzzPair(t, x, y, func(f *fz) uint8 { return f.byte() })
		case 20:
			fuzzPair(t, x, y, func(f *fz) fzKeyer { return fzKeyer{f.str()} })
		case 21:
			fuzzPair(t, x, y, func(f *fz) []any { return fzSlice(f, f.any) })
		case 22:
			fuzzPair(t, x, y, func(f *fz) map[int8]time.Time {
				return fzMap(f, func() int8 { return int8(f.n(3)) }, f.time)
			})
		case 23:
			fuzzPair(t, x, y, func(f *fz) struct {
				V []fzAll
				W map[string]*fzAll
			} {
				var v struct {
					V []fzAll
					W map[string]*fzAll
				}
				v.V = fzSlice(f, f.all)
				v.W = fzMap(f, f.str, func() *fzAll { a := f.all(); return &a })
				return v
			})
		}
	})
}

// TestKeyGolden pins hashed ids: keys are shared by every process and
// every version of a deployment, so the canonical form must never change.
// The wants were computed before the encoder wrote into one buffer (it
// used to feed a hash.Hash); any change here orphans every stored entry.
func TestKeyGolden(t *testing.T) {
	type inner struct {
		A *int
		B any
	}
	type query struct {
		Tenant string
		Tags   []string
		Limit  int
		Since  time.Time
		Filter map[string]string
		In     inner
		F      float64
		Bs     []byte
		Arr    [2]uint8
	}
	n := 5
	key := func(v any) string {
		k, err := keyKindOf(reflect.TypeOf(v))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		switch x := v.(type) {
		case query:
			out, err = appendKey(nil, "memo:g", k, nil, x)
		case map[int]string:
			out, err = appendKey(nil, "memo:g", k, nil, x)
		case []any:
			out, err = appendKey(nil, "memo:g", k, nil, x)
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for _, c := range []struct {
		arg  any
		want string
	}{
		{query{Tenant: "acme", Tags: []string{"a", "bb", "ccc"}, Limit: 50, Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Filter: map[string]string{"x": "1", "y": "2"}, In: inner{A: &n, B: "s"}, F: math.Copysign(0, -1), Bs: []byte{1, 2}, Arr: [2]uint8{3, 4}},
			"memo:g:~2JOMqFdDQL1r_bbKStwjhimL3s0b8DOpZCl4surArVQ"},
		{query{}, "memo:g:~mxeVo6Rgeee0Pa4TMs3pKHOmC2jprqYZrDIck0NxFYU"},
		{map[int]string{1: "a", 2: "b"}, "memo:g:~cieXy7w3xGNLGv-T_N-HmO3bnVcBX8_m9VQ0zfCPwus"},
		{[]any{1, "x", nil, 2.5}, "memo:g:~A5V7G4hoN_KiD0JjO3ZFuTY3pHyJglx0E4_jXGEQLG8"},
	} {
		if got := key(c.arg); got != c.want {
			t.Errorf("appendKey(%#v) = %q, want %q", c.arg, got, c.want)
		}
	}
}
