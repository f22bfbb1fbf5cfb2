package reliability_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gomemo/memo"
)

// Doc is the result type of the hostile-entry tests: strings, slices, maps,
// bytes and an interface-typed map, so that a hostile payload can aim at
// every decoder path.
type Doc struct {
	Arg   int
	Name  string
	Tags  []string
	Attrs map[string]int
	Blob  []byte
	Extra map[string]any
}

func doc(a int) Doc {
	return Doc{Arg: a, Name: "doc " + strconv.Itoa(a), Tags: []string{"x", "y"}, Attrs: map[string]int{"k": a},
		Blob: []byte{0, 1, 2}, Extra: map[string]any{"s": "v"}}
}

func sameDoc(x, y Doc) bool {
	return x.Arg == y.Arg && x.Name == y.Name && len(x.Tags) == 2 && x.Tags[1] == y.Tags[1] &&
		x.Attrs["k"] == y.Attrs["k"] && bytes.Equal(x.Blob, y.Blob) && x.Extra["s"] == y.Extra["s"]
}

// Memo's stored format, as envelope.go and docs/keys-and-codecs.md
// describe it. Version 1: magic 'm', version, codec name length and name,
// 8-byte fingerprint of R, stored-at, fresh-until and stale-until (Unix
// ns), 16-byte ETag, 4-byte payload length, payload. Version 2 (what memo
// writes) adds the compute duration (8 bytes) and the kind (1 byte) before
// the ETag. Integers big-endian. memo reads both.
const envFixed = 64 // version 2

func buildEnvelope(version byte, codec string, fp []byte, fresh int64, payload []byte) []byte {
	b := []byte{'m', version, byte(len(codec))}
	b = append(b, codec...)
	b = append(b, fp[:8]...)
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(fresh))
	b = binary.BigEndian.AppendUint64(b, uint64(fresh))
	b = append(b, make([]byte, 16)...) // the ETag: memo's reads do not check it
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// split returns the codec name length, fingerprint and payload of a stored
// envelope.
func split(env []byte) (n int, fp, payload []byte) {
	n = int(env[2])
	return n, env[3+n : 11+n], env[envFixed+n:]
}

type hostile struct {
	name string
	v    []byte
	hit  bool // a control: a well-formed entry that must be served
}

// hostileCases derives corrupt and hostile entries from good, a real entry
// of the function under test.
func hostileCases(codec string, good []byte) []hostile {
	n, fp, payload := split(good)
	future := time.Now().Add(time.Hour).UnixNano()
	r := rand.New(rand.NewPCG(5, 6))
	random := func(size int) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	otherFP := bytes.Clone(fp)
	otherFP[0] ^= 0xff
	cs := []hostile{
		{name: "control: hand-built valid entry", v: buildEnvelope(1, codec, fp, future, payload), hit: true},
		{name: "empty", v: []byte{}},
		{name: "random 256 bytes", v: random(256)},
		{name: "random 64 KiB", v: random(64 << 10)},
		{name: "magic and version then random", v: append([]byte{'m', 1}, random(200)...)},
		{name: "truncated to 1 byte", v: good[:1]},
		{name: "truncated to 3 bytes", v: good[:3]},
		{name: "truncated header", v: good[:20]},
		{name: "truncated before length", v: good[:envFixed+n-1]},
		{name: "truncated payload", v: good[:len(good)-1]},
		{name: "trailing byte", v: append(bytes.Clone(good), 0)},
		{name: "format version 3", v: mut(func(b []byte) { b[1] = 3 })},
		{name: "format version 1 with a version 2 header", v: mut(func(b []byte) { b[1] = 1 })},
		{name: "unknown kind", v: mut(func(b []byte) { b[3+n+40] = 9 })},
		{name: "format version 0", v: mut(func(b []byte) { b[1] = 0 })},
		{name: "codec name length 255", v: mut(func(b []byte) { b[2] = 255 })},
		{name: "declared payload length 4 GiB", v: mut(func(b []byte) {
			binary.BigEndian.PutUint32(b[envFixed+n-4:], 0xffffffff)
		})},
		{name: "declared payload length 0", v: mut(func(b []byte) { binary.BigEndian.PutUint32(b[envFixed+n-4:], 0) })},
		{name: "expired", v: buildEnvelope(1, codec, fp, time.Now().Add(-time.Second).UnixNano(), payload)},
		{name: "another codec", v: buildEnvelope(1, "gob", fp, future, payload)},
		{name: "another result type", v: buildEnvelope(1, codec, otherFP, future, payload)},
		{name: "payload of random bytes", v: buildEnvelope(1, codec, fp, future, random(300))},
		{name: "payload empty", v: buildEnvelope(1, codec, fp, future, nil)},
	}
	if codec == "json" {
		cs = append(cs,
			hostile{name: "payload of the wrong type (string)", v: buildEnvelope(1, codec, fp, future, []byte(`"not a Doc"`))},
			hostile{name: "payload of the wrong type (array)", v: buildEnvelope(1, codec, fp, future, []byte(`[1,2,3]`))},
			hostile{name: "payload with wrong field types", v: buildEnvelope(1, codec, fp, future, []byte(`{"Arg":"x","Tags":{"a":1}}`))},
			hostile{name: "payload truncated JSON", v: buildEnvelope(1, codec, fp, future, payload[:len(payload)/2])},
			hostile{name: "payload huge number", v: buildEnvelope(1, codec, fp, future, []byte(`{"Arg":1`+string(bytes.Repeat([]byte{'0'}, 100000))+`}`))},
			hostile{name: "payload invalid UTF-8", v: buildEnvelope(1, codec, fp, future, []byte("{\"Name\":\"\xff\xfe\",\"Arg\":}"))},
		)
	} else {
		cs = append(cs,
			hostile{name: "payload of the wrong type (string)", v: buildEnvelope(1, codec, fp, future, []byte{0xa3, 'a', 'b', 'c'})},
			hostile{name: "payload of the wrong type (array)", v: buildEnvelope(1, codec, fp, future, []byte{0x93, 1, 2, 3})},
			hostile{name: "payload truncated", v: buildEnvelope(1, codec, fp, future, payload[:len(payload)/2])},
		)
	}
	return cs
}

// maxHostileAlloc bounds what reading one hostile entry may allocate (the
// whole call: read, failed decode, fn, encode, write): a few times the
// entry itself, never what it declares.
const maxHostileAlloc = 4 << 20

// maxHostileTime bounds the time of a call over a hostile entry: a miss
// costs a read, fn and a write, not seconds of decoding.
const maxHostileTime = 250 * time.Millisecond

// TestCorruptEntries writes corrupt and hostile entries straight into each
// server under memo's keys and calls the function: each must be a miss
// (fn's answer, no error, no panic) that the call overwrites, without a
// large allocation; a well-formed hand-built entry, the control, must be a
// hit. Hostile payloads inside well-formed envelopes, which test the
// codecs rather than the stores, are TestHostilePayloads'.
func TestCorruptEntries(t *testing.T) {
	for _, tg := range sharedTargets {
		t.Run(tg.name, func(t *testing.T) {
			target := tg.open(t)
			for _, codec := range []memo.Codec{memo.JSON, memo.Msgpack} {
				t.Run(codec.Name(), func(t *testing.T) { runCorrupt(t, target, codec) })
			}
		})
	}
}

func runCorrupt(t *testing.T, tg target, codec memo.Codec) {
	ctx := context.Background()
	fl := &faults{}
	var runs int
	f := memo.New(func(_ context.Context, a int) (Doc, error) { runs++; return doc(a), nil },
		memo.Namespace(namespace("corrupt")), memo.WithBackend(tg.b), memo.WithCodec(codec),
		memo.Timeout(10*time.Second), memo.Expire(time.Minute), memo.OnError(fl.hook))
	const a = 7
	key := f.Key(a)
	if _, err := f.Call(ctx, a); err != nil {
		t.Fatal(err)
	}
	good, ok, err := tg.b.Get(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Get(%q) after a call = %v, %v; want the entry", key, ok, err)
	}
	good = bytes.Clone(good)
	var (
		misses, overwritten int
		worstAlloc          uint64
		worstName           string
		worstTime           time.Duration
	)
	cases := hostileCases(codec.Name(), good)
	for _, hc := range cases {
		if err := tg.raw(ctx, key, hc.v); err != nil {
			t.Fatalf("%s: writing the entry: %v", hc.name, err)
		}
		before := runs
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		v, err := callNoPanic(t, f, a)
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		alloc := m1.TotalAlloc - m0.TotalAlloc
		if alloc > worstAlloc {
			worstAlloc, worstName = alloc, hc.name
		}
		worstTime = max(worstTime, took)
		if took > maxHostileTime {
			t.Errorf("%s (%d bytes): reading it took %v, over %v", hc.name, len(hc.v), took, maxHostileTime)
		}
		if err != nil || !sameDoc(v, doc(a)) {
			t.Errorf("%s: Call = %+v, %v; want fn's answer", hc.name, v, err)
			continue
		}
		if alloc > maxHostileAlloc {
			t.Errorf("%s (%d bytes): reading it allocated %s, over %s", hc.name, len(hc.v), mib(alloc), mib(maxHostileAlloc))
		}
		if hc.hit {
			if runs != before {
				t.Errorf("%s: fn ran; a well-formed entry must be a hit (the test's envelope builder is wrong?)", hc.name)
			}
			continue
		}
		if runs != before+1 {
			t.Errorf("%s: fn ran %d times, want 1: a corrupt entry was served", hc.name, runs-before)
			continue
		}
		misses++
		// Call returns once its write is done (and its flight has left):
		// the next call hits.
		if _, err := f.Call(ctx, a); err != nil || runs != before+1 {
			t.Errorf("%s: the entry was not overwritten (fn ran again: %v, err %v)", hc.name, runs != before+1, err)
			continue
		}
		overwritten++
	}
	figures(t, "cases", len(cases), "misses", misses, "overwritten", overwritten, "panics", 0,
		"max_alloc_per_read", mib(worstAlloc), "max_alloc_case", strconv.Quote(worstName),
		"max_time_per_read", worstTime, "faults_reported", fl.n.Load(), "fault_ops", fl.ops())
}
