package dynamobackend_test

import (
	"context"
	"testing"
	"time"
)

// TestAcquireIfAbsent: a lease taken only while the key holds no live
// value, in one UpdateItem when it is free: taken on an empty key; refused
// (exists false) while another holds it; refused with exists true once a
// value is stored; taken again over an expired value. It fails if a
// process whose read missed can take the lease over an answer just stored
// (fn would run again).
func TestAcquireIfAbsent(t *testing.T) {
	e := newLeaseEnv(t)
	ctx := context.Background()
	key := func(id string) string { return e.ns + ":" + id }
	for _, c := range []struct {
		name        string
		setup       func(id string)
		ok, exists  bool
		updates     int
		readsAtMost int
	}{
		{"empty key", func(string) {}, true, false, 1, 0},
		{"lease held", func(id string) { e.acquire(id, time.Minute, true) }, false, false, 1, 1},
		{"value stored", func(id string) {
			if err := e.b.Set(ctx, key(id), []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}, false, true, 1, 1},
		{"value expired", func(id string) {
			if err := e.b.Set(ctx, key(id), []byte("v"), time.Millisecond); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // the item's own expiry, in real milliseconds
		}, true, false, 1, 0},
		{"value without expiry", func(id string) {
			if err := e.b.Set(ctx, key(id), []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
		}, false, true, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "absent-" + c.name[:5]
			c.setup(id)
			before := e.calls()
			tok, ok, exists, err := e.b.AcquireIfAbsent(ctx, key(id), time.Minute)
			if err != nil || ok != c.ok || exists != c.exists || (tok != "") != c.ok {
				t.Fatalf("AcquireIfAbsent(%s) = %q, %v, %v, %v; want ok=%v exists=%v", id, tok, ok, exists, err, c.ok, c.exists)
			}
			after := e.calls()
			if d := after["UpdateItem"] - before["UpdateItem"]; d != c.updates {
				t.Errorf("AcquireIfAbsent(%s) made %d UpdateItem calls, want %d", id, d, c.updates)
			}
			if d := after["GetItem"] - before["GetItem"]; d > c.readsAtMost {
				t.Errorf("AcquireIfAbsent(%s) made %d GetItem calls, want at most %d", id, d, c.readsAtMost)
			}
			if c.ok {
				// The lease is real: a plain Acquire is refused.
				e.acquire(id, time.Minute, false)
			}
		})
	}
}
