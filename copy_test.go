package memo

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

type node struct {
	Name     string
	Children []*node
	Next     *node
	Attrs    map[string][]int
	Grid     [2][]byte
	When     time.Time
}

type flat struct {
	ID    int64
	Score float64
	Name  string
	Arr   [3]int
}

type named []string

type withIface struct{ V any }

func copyOf[T any](t *testing.T, v T) T {
	t.Helper()
	c := newCopier(reflect.TypeFor[T]())
	if !c.ok {
		t.Fatalf("newCopier(%T) not ok", v)
	}
	out := v
	if c.fixup != nil {
		c.fixup(unsafe.Pointer(&out))
	}
	return out
}

func TestCopierDeep(t *testing.T) {
	leaf := &node{Name: "leaf", Attrs: map[string][]int{"a": {1}}}
	orig := node{
		Name:     "root",
		Children: []*node{leaf, nil},
		Next:     &node{Name: "next", Children: []*node{}},
		Attrs:    map[string][]int{"x": {1, 2}, "nil": nil},
		Grid:     [2][]byte{{1, 2}, nil},
		When:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	cp := copyOf(t, orig)
	if diff := cmp.Diff(orig, cp, cmp.AllowUnexported(node{})); diff != "" {
		t.Fatalf("copy differs (-orig +copy):\n%s", diff)
	}
	// Mutate every reference in the copy; the original must not change.
	cp.Children[0].Name = "MUT"
	cp.Children[0].Attrs["a"][0] = 9
	cp.Next.Name = "MUT"
	cp.Attrs["x"][0] = 9
	cp.Attrs["new"] = nil
	cp.Grid[0][0] = 9
	if orig.Children[0].Name != "leaf" || leaf.Attrs["a"][0] != 1 || orig.Next.Name != "next" ||
		orig.Attrs["x"][0] != 1 || len(orig.Attrs) != 2 || orig.Grid[0][0] != 1 {
		t.Fatalf("mutating the copy changed the original: %+v", orig)
	}
	// nil and empty are preserved.
	if cp.Attrs["nil"] != nil || cp.Grid[1] != nil || cp.Children[1] != nil || cp.Next.Children == nil {
		t.Errorf("nil/empty not preserved: %+v", cp)
	}
}

func TestCopierKinds(t *testing.T) {
	if c := newCopier(reflect.TypeFor[flat]()); !c.ok || c.fixup != nil {
		t.Errorf("newCopier(flat) = ok %v, fixup %v; want a plain assignment", c.ok, c.fixup != nil)
	}
	if c := newCopier(reflect.TypeFor[time.Time]()); !c.ok || c.fixup != nil {
		t.Errorf("newCopier(time.Time): want a plain assignment")
	}
	if c := newCopier(reflect.TypeFor[withIface]()); c.ok {
		t.Errorf("newCopier(struct{V any}) ok; interfaces cannot be copied")
	}
	n := named{"a"}
	cp := copyOf(t, n)
	cp[0] = "b"
	if n[0] != "a" {
		t.Errorf("named slice shared")
	}
	m := map[string]*flat{"k": {ID: 1}}
	mc := copyOf(t, m)
	mc["k"].ID = 2
	if m["k"].ID != 1 {
		t.Errorf("map of pointers shared")
	}
}
