package memcachebackend

import (
	"context"
	"fmt"
	"time"

	"github.com/gomemo/memo"
)

// Lease internals exposed to the package's external tests.

const TombstoneFlags = tombstoneFlags

// LeaseKey returns the Memcached key of key's lease in b now (with the
// generation b would use).
func LeaseKey(ctx context.Context, b *Backend, key string) (string, error) {
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return "", fmt.Errorf("%q has no ':'", key)
	}
	st, err := b.current(ctx, ns)
	if err != nil {
		return "", err
	}
	return st.leaseKey(id)
}

// LeaseKeyFor returns the Memcached key of the lease of id in namespace ns
// at generation gen.
func LeaseKeyFor(ns string, gen uint64, id string) (string, error) {
	return newGenState(ns, gen, time.Time{}).leaseKey(id)
}

// SetFenceHook makes b's SetFenced call hook after each of its steps
// ("read", "checked", "written").
func SetFenceHook(b *Backend, hook func(stage string)) { b.fence.hook = hook }

// SetFenceBudget replaces b's fence budget (0: the default).
func SetFenceBudget(b *Backend, d time.Duration) { b.fence.budget = d }
