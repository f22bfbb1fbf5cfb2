package memo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"reflect"
	"testing"
	"time"
)

// user is the result type the version 1 golden entries in
// testdata/envelope were written for (by memo before version 2).
type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// Rolling deploy, new reading old: every entry version 1 wrote is read by
// this build, field for field.
func TestRollingDeployReadsV1(t *testing.T) {
	const stored, fresh = 1767225600000000000, 1767229200000000000
	tests := []struct {
		file             string
		fp               [8]byte
		payload          string
		freshUntil, stal int64
	}{
		{"v1-json-user.bin", fingerprint(reflect.TypeFor[user]()), `{"id":7,"name":"Ada"}`, fresh, fresh},
		{"v1-json-user-noexpiry.bin", fingerprint(reflect.TypeFor[user]()), `{"id":7,"name":"Ada"}`, 0, 0},
		{"v1-json-int.bin", fingerprint(reflect.TypeFor[int]()), `42`, fresh, fresh},
	}
	for _, tt := range tests {
		b, err := os.ReadFile("testdata/envelope/" + tt.file)
		if err != nil {
			t.Fatal(err)
		}
		e, err := decodeEnvelope(b)
		if err != nil {
			t.Fatalf("decodeEnvelope(%s) error %v", tt.file, err)
		}
		want := meta{storedAt: stored, freshUntil: tt.freshUntil, staleUntil: tt.stal, kind: kindValue}
		if e.meta != want || e.fp != tt.fp || string(e.codec) != "json" || string(e.payload) != tt.payload {
			t.Errorf("decodeEnvelope(%s) = %+v fp %x codec %q payload %q; want %+v fp %x json %q",
				tt.file, e.meta, e.fp, e.codec, e.payload, want, tt.fp, tt.payload)
		}
	}
}

// decodeEnvelopeV1 is the reader of every build before version 2, frozen
// as it was released (envelope.go at 55a12bf). Its caller, read, reported
// any error it returned to OnError and treated the entry as a miss, to be
// overwritten.
func decodeEnvelopeV1(b []byte) (payload []byte, err error) {
	const envFixedV1 = 55
	if len(b) < 3 {
		return nil, errEnvShort
	}
	if b[0] != envMagic {
		return nil, errEnvMagic
	}
	if b[1] != 1 {
		return nil, errEnvVersion
	}
	n := int(b[2])
	if len(b) < envFixedV1+n {
		return nil, errEnvShort
	}
	o := 3 + n
	p := binary.BigEndian.Uint32(b[o+48:])
	if uint64(len(b)-o-52) != uint64(p) {
		return nil, errEnvLength
	}
	return b[o+52:], nil
}

// Rolling deploy, old reading new: a build that predates version 2 finds
// every kind of version 2 entry (answers, remembered not-founds and
// errors, of any size) to be of an unknown version: a miss, never an
// error for its caller, and never a value decoded from the wrong bytes.
func TestRollingDeployOldBuildMissesV2(t *testing.T) {
	fp := fingerprint(reflect.TypeFor[user]())
	entries := map[string][]byte{}
	for _, p := range []string{``, `{"id":7,"name":"Ada"}`, string(bytes.Repeat([]byte("x"), 70000))} {
		b, _ := encodeEnvelope("json", fp, meta{1, 2, 3, 4, kindValue}, []byte(p))
		entries["value "+p[:min(len(p), 10)]] = b
	}
	neg, _ := encodeEnvelope("json", fp, meta{1, 2, 2, 4, kindNegative}, errorPayload("not found", "user 7: not found"))
	cached, _ := encodeEnvelope("msgpack", fp, meta{1, 2, 2, 4, kindError}, errorPayload("", "db down"))
	entries["negative"], entries["error"] = neg, cached
	for name, b := range entries {
		if _, err := decodeEnvelopeV1(b); !errors.Is(err, errEnvVersion) {
			t.Errorf("v1 reader on a v2 %s entry: error %v, want %v", name, err, errEnvVersion)
		}
	}
}

// The XFetch draw: probability exp(-t/(beta*delta)), none once t is far.
func TestEarlyProbability(t *testing.T) {
	const n = 200000
	tests := []struct {
		beta          float64
		left, compute int64
	}{
		{1, int64(time.Second), int64(time.Second)},     // e^-1
		{2, int64(time.Second), int64(time.Second)},     // e^-0.5
		{1, int64(3 * time.Second), int64(time.Second)}, // e^-3
		{1, int64(time.Minute), int64(time.Millisecond)},
		{1, int64(time.Second), 0},
		{1, 0, int64(time.Second)},
	}
	for _, tt := range tests {
		want := 0.0
		if tt.compute > 0 && tt.left > 0 {
			want = math.Exp(-float64(tt.left) / (tt.beta * float64(tt.compute)))
		}
		hits := 0
		for range n {
			if early(tt.beta, 0, tt.left, tt.compute) {
				hits++
			}
		}
		got := float64(hits) / n
		if math.Abs(got-want) > 0.005 {
			t.Errorf("early(beta %v, left %v, compute %v) fired %.4f of draws, want %.4f", tt.beta, time.Duration(tt.left), time.Duration(tt.compute), got, want)
		}
	}
}

// The backoff map stays bounded whatever keys fail.
func TestBackoffBounded(t *testing.T) {
	var b backoff
	for i := range 3 * maxBackoffKeys {
		b.fail(string(rune(i))+"k", int64(i), 0)
	}
	if n := len(b.m); n > maxBackoffKeys || int(b.n.Load()) != n {
		t.Fatalf("backoff holds %d keys (counter %d), want at most %d", n, b.n.Load(), maxBackoffKeys)
	}
	b.fail("x", 0, 0)
	if !b.holds("x", int64(minBackoff)-1) || b.holds("x", int64(minBackoff)) {
		t.Errorf("first failure: backoff does not hold for exactly %v", minBackoff)
	}
	b.fail("x", 0, 0)
	if !b.holds("x", int64(2*minBackoff)-1) {
		t.Errorf("second failure: backoff did not double")
	}
	b.fail("y", 0, time.Hour)
	if !b.holds("y", int64(time.Hour)-1) {
		t.Errorf("backoff shorter than the least asked for")
	}
	b.ok("x")
	if b.holds("x", 1) {
		t.Errorf("ok did not forget the key")
	}
}

// A key's invalidation count is the same read from bytes or a string, so
// that a fill checks the bucket its read counted.
func TestLocalSeqBytesMatchesString(t *testing.T) {
	lt := newLocalTier(1 << 20)
	for i := range 200 {
		key := "\x01a:" + string(rune('a'+i%26)) + string(rune('0'+i%10))
		lt.bump(key)
		if got, want := lt.seqBytes([]byte(key)), lt.seq(key); got != want {
			t.Fatalf("seqBytes(%q) = %d, want seq = %d", key, got, want)
		}
	}
}
