package memo

import (
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Keyer is implemented by argument types that choose their own cache key.
// MemoKey must return the same string for arguments that should share an
// entry and different strings otherwise; memo keeps it as is when it is
// short printable ASCII without spaces or ':' and hashes it otherwise.
type Keyer interface {
	MemoKey() string
}

// MaxKeyLen is the longest key memo builds: Memcached's limit.
const MaxKeyLen = 250

// hashedIDLen is the length of a hashed id: '~' and 43 base64url characters.
const hashedIDLen = 1 + 43

// keyKind is how memo turns an argument of type A into an id, decided once
// per function.
type keyKind uint8

const (
	keyString keyKind = iota + 1 // string kinds: as is when safe, else hashed
	keyInt                       // signed integer kinds: decimal
	keyUint                      // unsigned integer kinds: decimal
	keyBool                      // "true" / "false"
	keyFloat                     // shortest decimal that round-trips
	keyKeyer                     // A implements Keyer
	keyFunc                      // a KeyFunc option
	keyHash                      // canonical encoding, hashed
)

var (
	keyerType         = reflect.TypeFor[Keyer]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// keyKindOf decides how arguments of type t are keyed. It returns an error
// when t holds something that has no canonical form (funcs, channels).
func keyKindOf(t reflect.Type) (keyKind, error) {
	if t.Implements(keyerType) {
		return keyKeyer, nil
	}
	switch t.Kind() {
	case reflect.String:
		return keyString, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return keyInt, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return keyUint, nil
	case reflect.Bool:
		return keyBool, nil
	case reflect.Float32, reflect.Float64:
		return keyFloat, nil
	}
	if err := checkKeyable(t, map[reflect.Type]bool{}); err != nil {
		return 0, err
	}
	return keyHash, nil
}

func checkKeyable(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] || t.Implements(keyerType) || t.Implements(textMarshalerType) {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("%v has no canonical form", t)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkKeyable(t.Elem(), seen)
	case reflect.Map:
		if err := checkKeyable(t.Key(), seen); err != nil {
			return err
		}
		return checkKeyable(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("memo") == "-" {
				continue
			}
			if err := checkKeyable(f.Type, seen); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	}
	return nil
}

// safeID reports whether s can stand in a key as it is: non-empty printable
// ASCII without spaces or ':', not starting with the hash marker '~', and at
// most max bytes.
func safeID(s string, max int) bool {
	if len(s) == 0 || len(s) > max || s[0] == '~' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// appendString appends the id of a string: itself when safe, else "~" and
// its SHA-256. room is what the key can still take.
func appendString(dst []byte, s string, room int) []byte {
	if safeID(s, room) {
		return append(dst, s...)
	}
	sum := sha256.Sum256([]byte(s))
	return appendHashed(dst, sum[:])
}

func appendHashed(dst []byte, sum []byte) []byte {
	var id [hashedIDLen]byte
	id[0] = '~'
	base64.RawURLEncoding.Encode(id[1:], sum[:32])
	return append(dst, id[:]...)
}

// stringKey returns the key of string id s under namespace key ns.
func stringKey(ns, s string) string {
	var buf [MaxKeyLen + 8]byte
	b := append(append(buf[:0], ns...), ':')
	return string(appendString(b, s, MaxKeyLen-len(b)))
}

// buildKey returns the backend key for a under namespace key ns, with one
// allocation (the string) for the scalar kinds.
func buildKey[A any](ns string, kind keyKind, keyFn func(A) string, a A) (string, error) {
	var buf [MaxKeyLen + 8]byte
	b, err := appendKey(buf[:0], ns, kind, keyFn, a)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendKey appends ns + ":" + the id of a to dst.
func appendKey[A any](dst []byte, ns string, kind keyKind, keyFn func(A) string, a A) ([]byte, error) {
	dst = append(append(dst, ns...), ':')
	room := MaxKeyLen - len(ns) - 1
	// The scalar kinds read a through unsafe rather than any(a), which
	// would allocate: A's kind, hence its layout, was checked in New.
	p := unsafe.Pointer(&a)
	switch kind {
	case keyString:
		return appendString(dst, *(*string)(p), room), nil
	case keyInt:
		var n int64
		switch unsafe.Sizeof(a) {
		case 1:
			n = int64(*(*int8)(p))
		case 2:
			n = int64(*(*int16)(p))
		case 4:
			n = int64(*(*int32)(p))
		default:
			n = *(*int64)(p)
		}
		return strconv.AppendInt(dst, n, 10), nil
	case keyUint:
		var n uint64
		switch unsafe.Sizeof(a) {
		case 1:
			n = uint64(*(*uint8)(p))
		case 2:
			n = uint64(*(*uint16)(p))
		case 4:
			n = uint64(*(*uint32)(p))
		default:
			n = *(*uint64)(p)
		}
		return strconv.AppendUint(dst, n, 10), nil
	case keyBool:
		return strconv.AppendBool(dst, *(*bool)(p)), nil
	case keyFloat:
		if unsafe.Sizeof(a) == 4 {
			return strconv.AppendFloat(dst, float64(*(*float32)(p)), 'g', -1, 32), nil
		}
		return strconv.AppendFloat(dst, *(*float64)(p), 'g', -1, 64), nil
	case keyKeyer:
		k, ok := any(a).(Keyer)
		if !ok { // a nil interface argument
			return nil, errors.New("memo: nil argument has no MemoKey")
		}
		s, err := callMemoKey(k)
		if err != nil {
			return nil, err
		}
		return appendString(dst, s, room), nil
	case keyFunc:
		return appendString(dst, keyFn(a), room), nil
	}
	return appendCanon(dst, a)
}

// appendCanon appends the hash of a's canonical form. It is apart from
// appendKey so that only this path moves the argument to the heap.
func appendCanon[A any](dst []byte, a A) ([]byte, error) {
	h := sha256.New()
	e := canonEncoder{w: h}
	if err := e.value(reflect.ValueOf(&a).Elem(), 0); err != nil {
		return nil, err
	}
	var sum [sha256.Size]byte
	return appendHashed(dst, h.Sum(sum[:0])), nil
}

// callMemoKey calls MemoKey, turning a panic (a nil pointer receiver, say)
// into an error so that the cache fails open.
func callMemoKey(k Keyer) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("memo: MemoKey panicked: %v", r)
		}
	}()
	return k.MemoKey(), nil
}

// canonEncoder writes the canonical form of a value: type-tagged,
// length-prefixed, maps in sorted order, pointers followed, so that equal
// arguments give equal bytes in every process and distinct ones never do.
type canonEncoder struct {
	w   hash.Hash
	buf [9]byte
}

const maxCanonDepth = 100

func (e *canonEncoder) tag(t byte)              { e.buf[0] = t; e.w.Write(e.buf[:1]) }
func (e *canonEncoder) u64(n uint64)            { binary.BigEndian.PutUint64(e.buf[:8], n); e.w.Write(e.buf[:8]) }
func (e *canonEncoder) bytes(b []byte)          { e.u64(uint64(len(b))); e.w.Write(b) }
func (e *canonEncoder) str(s string)            { e.u64(uint64(len(s))); io.WriteString(e.w, s) }
func (e *canonEncoder) typeName(t reflect.Type) { e.str(t.PkgPath() + "." + t.String()) }

func (e *canonEncoder) value(v reflect.Value, depth int) error {
	if depth > maxCanonDepth {
		return errors.New("memo: argument nested too deeply (or cyclic) to key")
	}
	t := v.Type()
	if t.Kind() != reflect.Interface && t.Kind() != reflect.Pointer && v.CanInterface() {
		if t.Implements(keyerType) {
			s, err := callMemoKey(v.Interface().(Keyer))
			if err != nil {
				return err
			}
			e.tag('K')
			e.str(s)
			return nil
		}
		if t.Implements(textMarshalerType) {
			b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
			if err != nil {
				return fmt.Errorf("memo: keying %v: %w", t, err)
			}
			e.tag('T')
			e.bytes(b)
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		e.tag('b')
		if v.Bool() {
			e.tag(1)
		} else {
			e.tag(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.tag('i')
		e.u64(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.tag('u')
		e.u64(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.tag('f')
		f := v.Float()
		if f == 0 {
			f = 0 // -0 and +0 are one key
		}
		e.u64(math.Float64bits(f))
	case reflect.Complex64, reflect.Complex128:
		e.tag('c')
		c := v.Complex()
		e.u64(math.Float64bits(real(c)))
		e.u64(math.Float64bits(imag(c)))
	case reflect.String:
		e.tag('s')
		e.str(v.String())
	case reflect.Pointer:
		if v.IsNil() {
			e.tag('0')
			return nil
		}
		e.tag('p')
		return e.value(v.Elem(), depth+1)
	case reflect.Interface:
		if v.IsNil() {
			e.tag('0')
			return nil
		}
		e.tag('I')
		e.typeName(v.Elem().Type())
		return e.value(v.Elem(), depth+1)
	case reflect.Slice:
		if v.IsNil() {
			e.tag('0')
			return nil
		}
		fallthrough
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			e.tag('B')
			e.bytes(v.Bytes())
			return nil
		}
		e.tag('a')
		e.u64(uint64(v.Len()))
		for i := range v.Len() {
			if err := e.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.IsNil() {
			e.tag('0')
			return nil
		}
		// Each pair is encoded on its own, then the pairs are sorted.
		pairs := make([][]byte, 0, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			sub := &collect{}
			se := canonEncoder{w: sub}
			if err := se.value(iter.Key(), depth+1); err != nil {
				return err
			}
			if err := se.value(iter.Value(), depth+1); err != nil {
				return err
			}
			pairs = append(pairs, sub.b)
		}
		slices.SortFunc(pairs, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
		e.tag('m')
		e.u64(uint64(len(pairs)))
		for _, p := range pairs {
			e.bytes(p)
		}
	case reflect.Struct:
		e.tag('{')
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("memo") == "-" {
				continue
			}
			e.str(f.Name)
			if err := e.value(v.Field(i), depth+1); err != nil {
				return err
			}
		}
		e.tag('}')
	default:
		return fmt.Errorf("memo: cannot key a value of type %v", t)
	}
	return nil
}

// collect is a hash.Hash that only keeps what is written, for map pairs.
type collect struct{ b []byte }

func (c *collect) Write(p []byte) (int, error) { c.b = append(c.b, p...); return len(p), nil }
func (c *collect) Sum(b []byte) []byte         { return append(b, c.b...) }
func (c *collect) Reset()                      { c.b = c.b[:0] }
func (c *collect) Size() int                   { return len(c.b) }
func (c *collect) BlockSize() int              { return 1 }

// fingerprint returns 8 bytes that identify t's shape for decoding: kinds,
// names, field names, types and tags, recursively. A stored entry whose
// fingerprint differs from the current R's is a miss.
func fingerprint(t reflect.Type) [8]byte {
	var sb strings.Builder
	describe(&sb, t, map[reflect.Type]int{})
	sum := sha256.Sum256([]byte(sb.String()))
	var fp [8]byte
	copy(fp[:], sum[:8])
	return fp
}

func describe(sb *strings.Builder, t reflect.Type, seen map[reflect.Type]int) {
	if n, ok := seen[t]; ok {
		fmt.Fprintf(sb, "@%d", n)
		return
	}
	seen[t] = len(seen)
	if t.Name() != "" {
		sb.WriteString(t.PkgPath())
		sb.WriteByte('.')
		sb.WriteString(t.Name())
	}
	sb.WriteByte('<')
	sb.WriteString(t.Kind().String())
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		describe(sb, t.Elem(), seen)
	case reflect.Array:
		fmt.Fprintf(sb, "%d", t.Len())
		describe(sb, t.Elem(), seen)
	case reflect.Map:
		describe(sb, t.Key(), seen)
		describe(sb, t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(sb, "{%s %q %v ", f.Name, f.Tag, f.Anonymous)
			describe(sb, f.Type, seen)
			sb.WriteByte('}')
		}
	}
	sb.WriteByte('>')
}
