package memo

import (
	"bytes"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	fp := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, payload := range [][]byte{{}, []byte(`{"a":1}`), bytes.Repeat([]byte{0}, 1<<16)} {
		b, etag := encodeEnvelope("json", fp, 10, 20, 30, payload)
		e, err := decodeEnvelope(b)
		if err != nil {
			t.Fatalf("decodeEnvelope(encodeEnvelope(%d bytes)) error %v", len(payload), err)
		}
		got := []any{string(e.codec), e.fp, e.storedAt, e.freshUntil, e.staleUntil, e.etag, len(e.payload)}
		want := []any{"json", fp, int64(10), int64(20), int64(30), etag, len(payload)}
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
	good, _ := encodeEnvelope("json", [8]byte{}, 1, 2, 3, []byte("xyz"))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, errEnvShort},
		{"magic", mut(func(b []byte) []byte { b[0] = 'x'; return b }), errEnvMagic},
		{"version", mut(func(b []byte) []byte { b[1] = 2; return b }), errEnvVersion},
		{"codec length past end", mut(func(b []byte) []byte { b[2] = 255; return b }), errEnvShort},
		{"truncated header", good[:30], errEnvShort},
		{"truncated payload", good[:len(good)-1], errEnvLength},
		{"trailing bytes", append(append([]byte(nil), good...), 0), errEnvLength},
		{"huge length", mut(func(b []byte) []byte { copy(b[3+4+48:], []byte{0xff, 0xff, 0xff, 0xff}); return b }), errEnvLength},
	}
	for _, tt := range tests {
		if _, err := decodeEnvelope(tt.in); err != tt.want {
			t.Errorf("decodeEnvelope(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	good, _ := encodeEnvelope("json", [8]byte{9}, 1, 2, 3, []byte(`{"ID":1}`))
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte("m\x01\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes, apart from the
		// ETag, which encode recomputes from the payload.
		again, _ := encodeEnvelope(string(e.codec), e.fp, e.storedAt, e.freshUntil, e.staleUntil, e.payload)
		n := 3 + len(e.codec) + 32
		if !bytes.Equal(again[:n], b[:n]) || !bytes.Equal(again[n+16:], b[n+16:]) {
			t.Fatalf("re-encoding %q gave %q", b, again)
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
