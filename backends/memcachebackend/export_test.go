package memcachebackend

import (
	"context"
	"fmt"
	"time"

	"github.com/gomemo/memo"
)

// Internals exposed to the package's external tests.
var (
	Expiration = expiration
	GenKey     = genKey
)

const (
	ItemOverhead = itemOverhead
	GenOverhead  = genOverhead
)

// StoredKey returns the Memcached key under which b stores key now (with
// the generation b would use for a Get), for tests and benchmarks that
// read the stored bytes with the raw client.
func StoredKey(ctx context.Context, b *Backend, key string) (string, error) {
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return "", fmt.Errorf("%q has no ':'", key)
	}
	st, err := b.current(ctx, ns)
	if err != nil {
		return "", err
	}
	return st.key(id)
}

// KeyFor returns the Memcached key of id in namespace ns at generation gen.
func KeyFor(ns string, gen uint64, id string) (string, error) {
	return newGenState(ns, gen, time.Time{}).key(id)
}

// CachedNamespaces returns how many namespaces b caches a generation for.
func CachedNamespaces(b *Backend) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.gens)
}
