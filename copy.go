package memo

import (
	"reflect"
	"time"
	"unsafe"
)

// A copier gives a caller a value of its own from a decoded value that the
// local tier keeps beside the entry's bytes, so that a hit need not
// decode. It is compiled once per result type R.
//
// The copy is made by a plain assignment followed by fix-ups that replace
// every slice, map and pointer reached with a copy of its own. Strings are
// immutable and shared. Types that hold interfaces, funcs, channels or
// unsafe pointers cannot be copied this way; their hits decode the payload
// instead.
type copier struct {
	ok    bool                   // values of R can be copied
	fixup func(p unsafe.Pointer) // nil: a plain assignment is a full copy
}

func newCopier(t reflect.Type) copier {
	c := &compiler{done: map[reflect.Type]*fix{}}
	f, ok := c.compile(t)
	if !ok {
		return copier{}
	}
	if f == nil {
		return copier{ok: true}
	}
	return copier{ok: true, fixup: func(p unsafe.Pointer) { f.fn(p) }}
}

// fix is the fix-up of one type; fn is nil when the type needs none.
type fix struct {
	fn      func(p unsafe.Pointer)
	pending bool // being compiled: a recursive type
}

type compiler struct{ done map[reflect.Type]*fix }

// compile returns the fix-up for t (nil when t needs none) and whether t
// can be copied at all.
func (c *compiler) compile(t reflect.Type) (*fix, bool) {
	if f, ok := c.done[t]; ok {
		return f, true // nil when t needs no fix-up
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return nil, true
	case reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return nil, false
	}
	if t == reflect.TypeFor[time.Time]() {
		return nil, true // its *Location is shared and immutable
	}
	f := &fix{pending: true}
	c.done[t] = f
	switch t.Kind() {
	case reflect.Struct:
		type field struct {
			off uintptr
			f   *fix
		}
		var fields []field
		for i := range t.NumField() {
			sf := t.Field(i)
			ff, ok := c.compile(sf.Type)
			if !ok {
				return nil, false
			}
			if ff != nil { // a fix-up, or a recursive type still compiling
				fields = append(fields, field{sf.Offset, ff})
			}
		}
		if len(fields) > 0 {
			f.fn = func(p unsafe.Pointer) {
				for _, fl := range fields {
					if fl.f.fn != nil {
						fl.f.fn(unsafe.Add(p, fl.off))
					}
				}
			}
		}
	case reflect.Array:
		ef, ok := c.compile(t.Elem())
		if !ok {
			return nil, false
		}
		if ef != nil {
			n, size := t.Len(), t.Elem().Size()
			f.fn = func(p unsafe.Pointer) {
				if ef.fn == nil {
					return
				}
				for i := range n {
					ef.fn(unsafe.Add(p, uintptr(i)*size))
				}
			}
		}
	case reflect.Pointer:
		elem := t.Elem()
		ef, ok := c.compile(elem)
		if !ok {
			return nil, false
		}
		f.fn = func(p unsafe.Pointer) {
			old := *(*unsafe.Pointer)(p)
			if old == nil {
				return
			}
			nv := reflect.New(elem)
			nv.Elem().Set(reflect.NewAt(elem, old).Elem())
			np := nv.UnsafePointer()
			if ef != nil && ef.fn != nil {
				ef.fn(np)
			}
			*(*unsafe.Pointer)(p) = np
		}
	case reflect.Slice:
		elem := t.Elem()
		ef, ok := c.compile(elem)
		if !ok {
			return nil, false
		}
		f.fn = sliceFix(t, ef)
	case reflect.Map:
		kf, ok1 := c.compile(t.Key())
		vf, ok2 := c.compile(t.Elem())
		if !ok1 || !ok2 {
			return nil, false
		}
		f.fn = func(p unsafe.Pointer) {
			src := reflect.NewAt(t, p).Elem()
			if src.IsNil() {
				return
			}
			dst := reflect.MakeMapWithSize(t, src.Len())
			iter := src.MapRange()
			k := reflect.New(t.Key()).Elem()
			v := reflect.New(t.Elem()).Elem()
			for iter.Next() {
				k.SetIterKey(iter)
				v.SetIterValue(iter)
				if kf != nil && kf.fn != nil {
					kf.fn(k.Addr().UnsafePointer())
				}
				if vf != nil && vf.fn != nil {
					vf.fn(v.Addr().UnsafePointer())
				}
				dst.SetMapIndex(k, v)
			}
			src.Set(dst)
		}
	default:
		return nil, false
	}
	f.pending = false
	if f.fn == nil {
		c.done[t] = nil // nothing to fix: a plain assignment copies it
		return nil, true
	}
	return f, true
}

// sliceFix copies a slice's backing array; common element types take a
// typed path with one allocation.
func sliceFix(t reflect.Type, ef *fix) func(p unsafe.Pointer) {
	elem := t.Elem()
	if ef == nil {
		switch elem {
		case reflect.TypeFor[string]():
			return func(p unsafe.Pointer) { s := (*[]string)(p); *s = cloneSlice(*s) }
		case reflect.TypeFor[byte]():
			return func(p unsafe.Pointer) { s := (*[]byte)(p); *s = cloneSlice(*s) }
		case reflect.TypeFor[int]():
			return func(p unsafe.Pointer) { s := (*[]int)(p); *s = cloneSlice(*s) }
		case reflect.TypeFor[int64]():
			return func(p unsafe.Pointer) { s := (*[]int64)(p); *s = cloneSlice(*s) }
		case reflect.TypeFor[float64]():
			return func(p unsafe.Pointer) { s := (*[]float64)(p); *s = cloneSlice(*s) }
		}
	}
	size := elem.Size()
	return func(p unsafe.Pointer) {
		src := reflect.NewAt(t, p).Elem()
		if src.IsNil() {
			return
		}
		n := src.Len()
		dst := reflect.MakeSlice(t, n, n)
		reflect.Copy(dst, src)
		if ef != nil && ef.fn != nil && n > 0 {
			base := dst.Index(0).Addr().UnsafePointer()
			for i := range n {
				ef.fn(unsafe.Add(base, uintptr(i)*size))
			}
		}
		src.Set(dst)
	}
}

// footprint estimates the heap bytes that the value at v holds beyond
// itself: the objects its pointers, slices, maps and strings reach, each
// rounded to the allocator's size class. Strings are counted whole even
// where decoding shared them. It is what a kept decoded value counts
// against the local tier's byte bound.
func footprint(v reflect.Value, depth int) int64 {
	if depth > 64 {
		return 0
	}
	switch v.Kind() {
	case reflect.String:
		return allocSize(v.Len())
	case reflect.Pointer:
		if v.IsNil() || v.Type() == reflect.TypeFor[*time.Location]() {
			return 0
		}
		e := v.Elem()
		return allocSize(int(e.Type().Size())) + footprint(e, depth+1)
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := allocSize(v.Cap() * int(v.Type().Elem().Size()))
		for i := range v.Len() {
			n += footprint(v.Index(i), depth+1)
		}
		return n
	case reflect.Array:
		var n int64
		for i := range v.Len() {
			n += footprint(v.Index(i), depth+1)
		}
		return n
	case reflect.Struct:
		var n int64
		for i := range v.NumField() {
			n += footprint(v.Field(i), depth+1)
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		// A map's table: its slots at the average load, and a header.
		slot := int(v.Type().Key().Size()+v.Type().Elem().Size()) + 1
		n := allocSize(48) + int64(v.Len()*slot*8/7*4/3)
		iter := v.MapRange()
		for iter.Next() {
			n += footprint(iter.Key(), depth+1) + footprint(iter.Value(), depth+1)
		}
		return n
	}
	return 0
}

// cloneSlice copies s into a new backing array of exactly its length; a nil
// slice stays nil. (slices.Clone goes through append's growth rounding.)
func cloneSlice[E any](s []E) []E {
	if s == nil {
		return nil
	}
	c := make([]E, len(s))
	copy(c, s)
	return c
}
