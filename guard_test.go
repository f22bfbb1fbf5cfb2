package memo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckMsgpackAcceptsValid(t *testing.T) {
	values := []any{
		nil, true, 1, -1, 1 << 40, -1 << 40, 3.5, float32(1.5), "", "short", strings.Repeat("x", 70000),
		[]byte{}, bytes.Repeat([]byte{1}, 70000), []int{1, 2, 3}, make([]int, 70000),
		map[string]any{"a": []any{1, "b", map[string]int{"c": 3}}, "t": time.Unix(1, 5)},
		struct {
			A int
			B []string
			C map[int]bool
			T time.Time
		}{1, []string{"x"}, map[int]bool{1: true}, time.Now()},
	}
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("checkMsgpack(%.40v) = %v, want nil", v, err)
		}
	}
}

func TestCheckMsgpackRefuses(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0x01)
	okDeep := append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x01)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errBadPack},
		{"bin32 declaring 4 GiB", []byte{0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2}, errBadPack},
		{"str32 declaring 4 GiB", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, errBadPack},
		{"array32 declaring 4G items", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1}, errBadPack},
		{"map32 declaring 4G pairs", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 1, 1}, errBadPack},
		{"truncated array", []byte{0x93, 1, 2}, errBadPack},
		{"trailing bytes", []byte{0x01, 0x02}, errBadPack},
		{"never-used byte", []byte{0xc1}, errBadPack},
		{"nested too deep", deep, errTooDeep},
		{"nested to MaxDepth", okDeep, nil},
	}
	for _, tt := range tests {
		if err := checkMsgpack(tt.in); err != tt.want {
			t.Errorf("checkMsgpack(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{"a":[1,{"b":"]]]]"}]}`, nil},
		{`"[[[[\"[[["`, nil},
		{strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), nil},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), errTooDeep},
		{strings.Repeat(`{"a":`, MaxDepth+1), errTooDeep},
	}
	for _, tt := range tests {
		if err := checkJSON([]byte(tt.in)); err != tt.want {
			t.Errorf("checkJSON(%.30q) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

// FuzzCheckMsgpack: whatever the guard passes, the decoder takes without
// allocating past what the bytes hold.
func FuzzCheckMsgpack(f *testing.F) {
	for _, v := range []any{1, "x", []int{1}, map[string]int{"a": 1}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkMsgpack(b) != nil {
			return
		}
		var v any
		msgpack.Unmarshal(b, &v) // must not panic or blow up
	})
}
