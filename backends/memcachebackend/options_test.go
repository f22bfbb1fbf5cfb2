package memcachebackend_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/gomemo/memo/backends/memcachebackend"
)

// TestInvalidOptions: New and every option panic on nil or invalid input,
// with a message that names the package and the mistake; none is coerced.
func TestInvalidOptions(t *testing.T) {
	client := memcache.New("127.0.0.1:1")
	tests := []struct {
		name string
		fn   func()
		want string
	}{
		{"nil client", func() { memcachebackend.New(nil) },
			"memcachebackend: New(nil): a *memcache.Client is required"},
		{"zero Option", func() { memcachebackend.New(client, memcachebackend.MaxItemSize(1<<20), memcachebackend.Option{}) },
			"memcachebackend: New: option 1 is the zero Option; make options with MaxItemSize or GenerationRefresh"},
		{"MaxItemSize(0)", func() { memcachebackend.MaxItemSize(0) },
			"memcachebackend: MaxItemSize(0): less than 314 bytes, the longest key and the per-item overhead"},
		{"MaxItemSize(-1)", func() { memcachebackend.MaxItemSize(-1) },
			"memcachebackend: MaxItemSize(-1): less than 314 bytes, the longest key and the per-item overhead"},
		{"MaxItemSize(313)", func() { memcachebackend.MaxItemSize(313) },
			"memcachebackend: MaxItemSize(313): less than 314 bytes, the longest key and the per-item overhead"},
		{"GenerationRefresh(-1ns)", func() { memcachebackend.GenerationRefresh(-time.Nanosecond) },
			"memcachebackend: GenerationRefresh(-1ns): negative duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				got := fmt.Sprint(recover())
				if got != tt.want {
					t.Errorf("panic = %q, want %q", got, tt.want)
				}
			}()
			tt.fn()
		})
	}
}

// TestValidOptions: the limits of each option are accepted.
func TestValidOptions(t *testing.T) {
	client := memcache.New("127.0.0.1:1")
	memcachebackend.New(client)
	memcachebackend.New(client, memcachebackend.MaxItemSize(314), memcachebackend.GenerationRefresh(0))
	memcachebackend.New(client, memcachebackend.MaxItemSize(1<<30), memcachebackend.GenerationRefresh(time.Hour))
}
