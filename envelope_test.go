package memo

import (
	"bytes"
	"os"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	fp := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, payload := range [][]byte{{}, []byte(`{"a":1}`), bytes.Repeat([]byte{0}, 1<<16)} {
		b, etag := encodeEnvelope("json", fp, meta{10, 20, 30, 40, kindValue}, payload)
		e, err := decodeEnvelope(b)
		if err != nil {
			t.Fatalf("decodeEnvelope(encodeEnvelope(%d bytes)) error %v", len(payload), err)
		}
		got := []any{string(e.codec), e.fp, e.meta, e.etag, len(e.payload)}
		want := []any{"json", fp, meta{10, 20, 30, 40, kindValue}, etag, len(payload)}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("field %d = %v, want %v", i, got[i], want[i])
			}
		}
		if !bytes.Equal(e.payload, payload) {
			t.Errorf("payload differs")
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	good, _ := encodeEnvelope("json", [8]byte{}, meta{1, 2, 3, 4, kindValue}, []byte("xyz"))
	neg, _ := encodeEnvelope("json", [8]byte{}, meta{1, 2, 2, 4, kindNegative}, errorPayload("not found", "user 9: not found"))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, errEnvShort},
		{"magic", mut(func(b []byte) []byte { b[0] = 'x'; return b }), errEnvMagic},
		{"version 0", mut(func(b []byte) []byte { b[1] = 0; return b }), errEnvVersion},
		{"version 3", mut(func(b []byte) []byte { b[1] = 3; return b }), errEnvVersion},
		{"kind", mut(func(b []byte) []byte { b[3+4+40] = 3; return b }), errEnvKind},
		{"error payload too short", mut(func(b []byte) []byte { b[3+4+40] = kindError; return b }), errEnvLength},
		{"sentinel past end", func() []byte {
			b := append([]byte(nil), neg...)
			b[3+4+60] = 0xff
			return b
		}(), errEnvLength},
		{"codec length past end", mut(func(b []byte) []byte { b[2] = 255; return b }), errEnvShort},
		{"truncated header", good[:30], errEnvShort},
		{"truncated payload", good[:len(good)-1], errEnvLength},
		{"trailing bytes", append(append([]byte(nil), good...), 0), errEnvLength},
		{"huge length", mut(func(b []byte) []byte { copy(b[3+4+57:], []byte{0xff, 0xff, 0xff, 0xff}); return b }), errEnvLength},
	}
	for _, tt := range tests {
		if _, err := decodeEnvelope(tt.in); err != tt.want {
			t.Errorf("decodeEnvelope(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	good, _ := encodeEnvelope("json", [8]byte{9}, meta{1, 2, 3, 4, kindValue}, []byte(`{"ID":1}`))
	neg, _ := encodeEnvelope("json", [8]byte{9}, meta{1, 2, 2, 4, kindNegative}, errorPayload("nf", "x: nf"))
	v1, _ := os.ReadFile("testdata/envelope/v1-json-user.bin")
	f.Add(good)
	f.Add(neg)
	f.Add(v1)
	f.Add(good[:20])
	f.Add([]byte("m\x01\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if e.kind != kindValue {
			splitErrorPayload(e.payload) // must not panic on what decodes
		}
		// Whatever decodes re-encodes to the same fields (a version 1
		// entry as version 2), the ETag apart: encode recomputes it.
		again, _ := encodeEnvelope(string(e.codec), e.fp, e.meta, e.payload)
		e2, err := decodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoding %q: %v", b, err)
		}
		if string(e2.codec) != string(e.codec) || e2.fp != e.fp || e2.meta != e.meta || !bytes.Equal(e2.payload, e.payload) {
			t.Fatalf("re-encoding %q gave %q", b, again)
		}
		if b[1] == envVersion {
			n := 3 + len(e.codec) + 41
			if !bytes.Equal(again[:n], b[:n]) || !bytes.Equal(again[n+16:], b[n+16:]) {
				t.Fatalf("re-encoding %q gave %q", b, again)
			}
		}
	})
}

func FuzzStringKey(f *testing.F) {
	for _, s := range []string{"", "a", "a b", "~x", "a:b", "\x00", "\xff", "user-42"} {
		f.Add(s, "other")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := stringKey("memo:ns", a), stringKey("memo:ns", b)
		if (ka == kb) != (a == b) {
			t.Fatalf("stringKey(%q) = %q, stringKey(%q) = %q", a, ka, b, kb)
		}
		if ka != stringKey("memo:ns", a) {
			t.Fatalf("stringKey(%q) is not deterministic", a)
		}
		if len(ka) > MaxKeyLen {
			t.Fatalf("stringKey(%q) = %d bytes", a, len(ka))
		}
		ns, id, ok := SplitKey(ka)
		if !ok || ns != "memo:ns" || id == "" {
			t.Fatalf("SplitKey(%q) = %q, %q, %v", ka, ns, id, ok)
		}
		for i := 0; i < len(id); i++ {
			if id[i] <= ' ' || id[i] >= 0x7f || id[i] == ':' {
				t.Fatalf("stringKey(%q) = %q has byte %#x", a, ka, id[i])
			}
		}
	})
}
