package memo

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Keyer is implemented by argument types that choose their own cache key.
// MemoKey must return the same string for arguments that should share an
// entry and different strings otherwise; memo keeps it as is when it is
// short printable ASCII without spaces or ':' and hashes it otherwise.
//
// MemoKey counts when it is declared on the type itself, with a value or a
// pointer receiver: an argument of type T whose MemoKey is declared on *T
// is keyed by calling it on a copy. A MemoKey that a struct only gets by
// promotion from an embedded field does not count, since it would leave
// the struct's other fields out of the key: such a struct is keyed field
// by field, and the embedded field by its MemoKey. A MemoKey that panics
// is recovered: the call runs fn uncached and reports the error.
//
// The key rules, the contract that holds for every argument type New
// accepts (see docs/keys-and-codecs.md):
//
//   - A [KeyFunc] decides alone. Otherwise a type that declares MemoKey is
//     keyed by it (an argument type that is an interface with MemoKey, such
//     as Keyer, by its dynamic value's MemoKey, whatever that value's type),
//     then a type that declares MarshalText
//     (encoding.TextMarshaler, on T or *T, as above) by its text: two values
//     share a key exactly when they give the same text. time.Time is keyed
//     this way: the instant to the nanosecond and the UTC offset, so one
//     instant in two offsets gives two keys, while two zone names with one
//     offset, and the monotonic clock reading, do not count.
//   - Strings, integers and booleans by value; floats by value with -0.0 and
//     +0.0 sharing a key and every NaN sharing one key (the same rule at
//     top level and nested); complex numbers part by part, likewise.
//   - Structs by every field, exported or not, embedded ones included,
//     except fields tagged memo:"-"; arrays and slices element by element
//     (a nil slice differs from an empty one); maps by their entries,
//     whatever the order; pointers by what they point to (a nil pointer is
//     a value of its own); interfaces by the dynamic type and value.
//   - Funcs, channels, unsafe pointers and the types of packages sync and
//     sync/atomic have no canonical form: New panics for an argument type
//     that holds one where no MemoKey, MarshalText or memo:"-" tag covers
//     it. A value found only at call time (in an interface) that cannot be
//     keyed, a cyclic or too deeply nested value (over 100 levels), or a
//     MemoKey or MarshalText that panics or fails makes that call run fn
//     uncached and report the error: key building never panics.
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
	keyString   keyKind = iota + 1 // string kinds: as is when safe, else hashed
	keyInt                         // signed integer kinds: decimal
	keyUint                        // unsigned integer kinds: decimal
	keyBool                        // "true" / "false"
	keyFloat                       // shortest decimal that round-trips, -0 as 0
	keyKeyer                       // A's method set has a declared MemoKey
	keyFunc                        // a KeyFunc option
	keyHash                        // canonical encoding, hashed
	keyKeyerPtr                    // MemoKey declared on *A
)

var (
	keyerType         = reflect.TypeFor[Keyer]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// ownMethod is the key method a type declares itself, if any.
type ownMethod uint8

const (
	ownNone     ownMethod = iota
	ownKeyer              // MemoKey on T
	ownKeyerPtr           // MemoKey on *T
	ownText               // MarshalText on T
	ownTextPtr            // MarshalText on *T
)

var ownMethods sync.Map // reflect.Type -> ownMethod

// ownKeyMethod returns the MemoKey or MarshalText that t declares, on t or
// on *t, MemoKey first. Methods a struct only gets by promotion from an
// embedded field do not count. t is not a pointer or interface type.
func ownKeyMethod(t reflect.Type) ownMethod {
	if t.PkgPath() == "" {
		// Unnamed and predeclared types declare no methods.
		return ownNone
	}
	if m, ok := ownMethods.Load(t); ok {
		return m.(ownMethod)
	}
	m := ownNone
	if ptr, ok := declares(t, keyerType, "MemoKey"); ok {
		m = ownKeyer
		if ptr {
			m = ownKeyerPtr
		}
	} else if ptr, ok := declares(t, textMarshalerType, "MarshalText"); ok {
		m = ownText
		if ptr {
			m = ownTextPtr
		}
	}
	ownMethods.Store(t, m)
	return m
}

// declares reports whether t declares the method name of iface on t or
// (ptr) on *t, rather than getting it by promotion.
func declares(t, iface reflect.Type, name string) (ptr, ok bool) {
	for i, rt := range [2]reflect.Type{t, reflect.PointerTo(t)} {
		if rt.Implements(iface) && !promoted(t, rt, name) {
			return i == 1, true
		}
	}
	return false, false
}

// promoted reports whether rt (t or *t) has the method name only by
// promotion from one of t's embedded fields. Only then is the method a
// compiler-generated wrapper: a method that t declares itself, shadowing an
// embedded one, has t's own source file.
func promoted(t, rt reflect.Type, name string) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	embeds := false
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.Anonymous {
			continue
		}
		_, ok := f.Type.MethodByName(name)
		if !ok && f.Type.Kind() != reflect.Pointer && f.Type.Kind() != reflect.Interface {
			_, ok = reflect.PointerTo(f.Type).MethodByName(name)
		}
		if ok {
			embeds = true
			break
		}
	}
	if !embeds {
		return false
	}
	m, _ := rt.MethodByName(name)
	fn := runtime.FuncForPC(m.Func.Pointer())
	if fn == nil {
		return true
	}
	file, _ := fn.FileLine(fn.Entry())
	return file == "<autogenerated>"
}

// keyKindOf decides how arguments of type t are keyed. It returns an error
// when t holds something that has no canonical form (funcs, channels,
// unsafe pointers, sync types) not covered by a MemoKey, a MarshalText or
// a memo:"-" tag.
func keyKindOf(t reflect.Type) (keyKind, error) {
	switch t.Kind() {
	case reflect.Interface:
		if t.Implements(keyerType) {
			return keyKeyer, nil
		}
	case reflect.Pointer:
		if e := t.Elem(); e.Kind() != reflect.Pointer && e.Kind() != reflect.Interface {
			if m := ownKeyMethod(e); m == ownKeyer || m == ownKeyerPtr {
				return keyKeyer, nil
			}
		}
	default:
		switch ownKeyMethod(t) {
		case ownKeyer:
			return keyKeyer, nil
		case ownKeyerPtr:
			return keyKeyerPtr, nil
		case ownText, ownTextPtr:
			return keyHash, nil
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
	}
	if err := checkKeyable(t, map[reflect.Type]bool{}); err != nil {
		return 0, err
	}
	return keyHash, nil
}

// checkKeyable reports what in t has no canonical form, mirroring
// canonEncoder.value.
func checkKeyable(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	k := t.Kind()
	if k != reflect.Pointer && k != reflect.Interface && ownKeyMethod(t) != ownNone {
		return nil
	}
	if syncType(t) {
		return fmt.Errorf("%v has no canonical form: its state changes under concurrent use", t)
	}
	switch k {
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
			if f.Name == "_" || f.Tag.Get("memo") == "-" {
				continue
			}
			if err := checkKeyable(f.Type, seen); err != nil {
				if _, ok := err.(*fieldError); ok {
					return err // the innermost field names the culprit
				}
				return &fieldError{t.String() + "." + f.Name, err}
			}
		}
	}
	return nil
}

// fieldError is a field of A that has no canonical form.
type fieldError struct {
	path string
	err  error
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("field %s: %v (implement memo.Keyer or MarshalText on its type, pass memo.KeyFunc, or tag the field memo:\"-\" to leave it out of the key)", e.path, e.err)
}

func (e *fieldError) Unwrap() error { return e.err }

// syncType reports whether t is a type of package sync or sync/atomic, whose
// state is not a value.
func syncType(t reflect.Type) bool {
	p := t.PkgPath()
	return p == "sync" || p == "sync/atomic"
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

// appendKey appends ns + ":" + the id of a to dst. It never panics: a
// MemoKey, MarshalText or KeyFunc that panics is reported as an error.
func appendKey[A any](dst []byte, ns string, kind keyKind, keyFn func(A) string, a A) ([]byte, error) {
	dst = append(append(dst, ns...), ':')
	return appendID(dst, MaxKeyLen-len(ns)-1, kind, keyFn, a)
}

// appendID appends the id of a, for a key with room bytes left for it.
func appendID[A any](dst []byte, room int, kind keyKind, keyFn func(A) string, a A) ([]byte, error) {
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
		// -0 is written as 0, the rule of the canonical form; every NaN
		// is written "NaN".
		if unsafe.Sizeof(a) == 4 {
			f := *(*float32)(p)
			if f == 0 {
				f = 0
			}
			return strconv.AppendFloat(dst, float64(f), 'g', -1, 32), nil
		}
		f := *(*float64)(p)
		if f == 0 {
			f = 0
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
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
	case keyKeyerPtr:
		s, err := ptrMemoKey(a)
		if err != nil {
			return nil, err
		}
		return appendString(dst, s, room), nil
	case keyFunc:
		s, err := callKeyFunc(keyFn, a)
		if err != nil {
			return nil, err
		}
		return appendString(dst, s, room), nil
	}
	return appendCanon(dst, a)
}

// ptrMemoKey calls MemoKey, declared on *A, on a copy of a. It is apart
// from appendKey so that only this path moves the argument to the heap.
func ptrMemoKey[A any](a A) (string, error) {
	k, ok := any(&a).(Keyer)
	if !ok {
		return "", fmt.Errorf("memo: *%v has no MemoKey", reflect.TypeFor[A]())
	}
	return callMemoKey(k)
}

// callKeyFunc calls a KeyFunc, turning a panic into an error.
func callKeyFunc[A any](keyFn func(A) string, a A) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("memo: KeyFunc panicked: %v", r)
		}
	}()
	return keyFn(a), nil
}

// appendCanon appends the hash of a's canonical form. It is apart from
// appendKey so that only this path moves the argument to the heap.
func appendCanon[A any](dst []byte, a A) (_ []byte, err error) {
	defer func() {
		// The encoder recovers the panics it expects (user methods); this
		// is the backstop that keeps key building from ever panicking.
		if r := recover(); r != nil {
			err = fmt.Errorf("memo: keying %v: %v", reflect.TypeFor[A](), r)
		}
	}()
	// The canonical form is built in one buffer and hashed once.
	var scratch [512]byte
	e := canonEncoder{b: scratch[:0]}
	// The root is addressable, and so is everything the encoder reaches
	// from it or copies, so that unexported fields can be read.
	if err := e.value(reflect.ValueOf(&a).Elem(), 0); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(e.b)
	return appendHashed(dst, sum[:]), nil
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

// callMarshalText calls MarshalText, turning a panic into an error.
func callMarshalText(m encoding.TextMarshaler) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("memo: MarshalText panicked: %v", r)
		}
	}()
	b, err = m.MarshalText()
	if err != nil {
		err = fmt.Errorf("memo: MarshalText: %w", err)
	}
	return b, err
}

// canonEncoder writes the canonical form of a value: type-tagged,
// length-prefixed, maps in sorted order, pointers followed, so that equal
// arguments give equal bytes in every process and distinct ones never do.
type canonEncoder struct {
	b []byte // the form so far
}

const maxCanonDepth = 100

// canonNaN is the one NaN of the canonical form: math.NaN()'s bits.
const canonNaN = 0x7FF8000000000001

func (e *canonEncoder) tag(t byte)     { e.b = append(e.b, t) }
func (e *canonEncoder) u64(n uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, n) }
func (e *canonEncoder) bytes(b []byte) { e.u64(uint64(len(b))); e.b = append(e.b, b...) }
func (e *canonEncoder) str(s string)   { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

// typeName writes t's package path and name as one string.
func (e *canonEncoder) typeName(t reflect.Type) {
	pkg, name := t.PkgPath(), t.String()
	e.u64(uint64(len(pkg) + 1 + len(name)))
	e.b = append(append(append(e.b, pkg...), '.'), name...)
}

// float writes f with -0 as +0 and every NaN as one.
func (e *canonEncoder) float(f float64) {
	switch {
	case f == 0:
		e.u64(0)
	case f != f:
		e.u64(canonNaN)
	default:
		e.u64(math.Float64bits(f))
	}
}

// addressable returns a copy of v that can be addressed. v must not be
// read-only.
func addressable(v reflect.Value) reflect.Value {
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	return c
}

// value writes v's canonical form. v is addressable: unexported fields are
// read through their address, and values that are not addressable
// (interface contents, map entries) are copied first.
func (e *canonEncoder) value(v reflect.Value, depth int) error {
	if depth > maxCanonDepth {
		return errors.New("memo: argument nested too deeply (or cyclic) to key")
	}
	t := v.Type()
	if !v.CanInterface() { // reached through an unexported field
		if !v.CanAddr() {
			return fmt.Errorf("memo: cannot read an unexported %v", t)
		}
		v = reflect.NewAt(t, unsafe.Pointer(v.UnsafeAddr())).Elem()
	}
	k := t.Kind()
	if k != reflect.Interface && k != reflect.Pointer {
		switch own := ownKeyMethod(t); own {
		case ownKeyer, ownKeyerPtr:
			var kr Keyer
			if own == ownKeyerPtr {
				// On a copy: a pointer receiver must not touch the caller's value.
				kr = addressable(v).Addr().Interface().(Keyer)
			} else {
				kr = v.Interface().(Keyer)
			}
			s, err := callMemoKey(kr)
			if err != nil {
				return fmt.Errorf("%w (keying %v)", err, t)
			}
			e.tag('K')
			e.str(s)
			return nil
		case ownText, ownTextPtr:
			var m encoding.TextMarshaler
			if own == ownTextPtr {
				m = addressable(v).Addr().Interface().(encoding.TextMarshaler)
			} else {
				m = v.Interface().(encoding.TextMarshaler)
			}
			b, err := callMarshalText(m)
			if err != nil {
				return fmt.Errorf("%w (keying %v)", err, t)
			}
			e.tag('T')
			e.bytes(b)
			return nil
		}
	}
	if syncType(t) {
		return fmt.Errorf("memo: cannot key a %v: its state changes under concurrent use", t)
	}
	switch k {
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
		e.float(v.Float())
	case reflect.Complex64, reflect.Complex128:
		e.tag('c')
		c := v.Complex()
		e.float(real(c))
		e.float(imag(c))
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
		return e.value(addressable(v.Elem()), depth+1)
	case reflect.Slice:
		if v.IsNil() {
			e.tag('0')
			return nil
		}
		fallthrough
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice && ownKeyMethod(t.Elem()) == ownNone {
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
		// Each pair is encoded on its own (into one buffer), then the
		// pairs are sorted.
		type span struct{ i, j int }
		var pe canonEncoder
		pairs := make([]span, 0, v.Len())
		key, val := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
		iter := v.MapRange()
		for iter.Next() {
			key.SetIterKey(iter)
			val.SetIterValue(iter)
			i := len(pe.b)
			if err := pe.value(key, depth+1); err != nil {
				return err
			}
			if err := pe.value(val, depth+1); err != nil {
				return err
			}
			pairs = append(pairs, span{i, len(pe.b)})
		}
		slices.SortFunc(pairs, func(x, y span) int { return bytes.Compare(pe.b[x.i:x.j], pe.b[y.i:y.j]) })
		e.tag('m')
		e.u64(uint64(len(pairs)))
		for _, p := range pairs {
			e.bytes(pe.b[p.i:p.j])
		}
	case reflect.Struct:
		e.tag('{')
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Name == "_" || f.Tag.Get("memo") == "-" {
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
