package memo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gomemo/memo/internal/store"
)

// Backend stores opaque bytes under string keys. It knows nothing of codecs
// or Go types: memo hands it finished envelopes (see [Entry]) and reads them
// back.
//
// Implementations must be safe for concurrent use by multiple goroutines.
// Every method honours ctx: when ctx ends the method returns promptly with an
// error wrapping ctx.Err(). memo treats every error from a Backend as a fault
// of the cache, never of the caller: a failed Get is a miss and a failed Set
// is reported (see [OnError]) while the caller still gets fn's answer.
//
// Keys that memo passes have the form "<namespace key>:<id>" where the id
// contains no ':' (see [Func.Key]); they are at most 250 bytes of printable
// ASCII without spaces, so they are legal on every store memo ships.
type Backend interface {
	// Get returns the value stored under key. A missing or expired key is
	// (nil, false, nil), never an error. The returned slice belongs to the
	// caller only for reading: it must not be modified.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)

	// Set stores value under key for ttl. A ttl of 0 means no expiry (the
	// store may still evict); a store whose expiry has a coarser resolution
	// than ttl rounds it up, never down. Set must not keep a reference to
	// value after it returns. A value the store cannot hold returns an error
	// wrapping [ErrTooLarge].
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Clearer is implemented by a [Backend] that can drop a whole namespace.
// Every backend that memo ships implements it.
//
// Clear removes every key of the form ns + ":" + id where id contains no
// ':'. Keys of other namespaces are left alone, including namespaces of which
// ns is a prefix ("a" never touches "ab:1") and nested ones ("a" never
// touches "a:b:1"). Stores that cannot list keys may implement Clear with a
// generation counter, so that the old entries become unreachable at once and
// expire later. Clear is safe for concurrent use with every other method;
// entries written concurrently with a Clear may or may not survive it.
type Clearer interface {
	Clear(ctx context.Context, ns string) error
}

// ErrTooLarge is wrapped by the error a [Backend] returns from Set when the
// value exceeds what the store accepts (Memcached's item size, DynamoDB's
// item limit, backends/memory's byte bound), and what the local tier refuses
// for its own bound. memo reports it and still returns fn's answer.
var ErrTooLarge = store.ErrTooLarge // one value, shared with the local tier

// ErrClearUnsupported is returned by [Func.Clear] when the backend does not
// implement [Clearer]. errors.Is(ErrClearUnsupported, errors.ErrUnsupported)
// holds.
var ErrClearUnsupported = fmt.Errorf("memo: backend cannot clear a namespace: %w", errors.ErrUnsupported)

// EncodeError is returned by [Func.Lookup] when fn's answer cannot be
// encoded by the codec, so that there is no payload to serve. Err is the
// codec's error.
type EncodeError struct{ Err error }

// Error says that the answer could not be encoded, and why.
func (e *EncodeError) Error() string { return fmt.Sprintf("memo: encoding the answer: %v", e.Err) }

// Unwrap returns the codec's error.
func (e *EncodeError) Unwrap() error { return e.Err }

// BackendError is what memo reports (see [OnError]) when a backend call
// fails or an entry it read cannot be used. memo never returns it from
// [Func.Call]: the cache fails open.
type BackendError struct {
	// Op is what failed: "get", "set", "delete" or "clear" (a backend
	// call), "lease" (taking or ending a lease, or voiding one before
	// Set; see Lease), "publish" (an invalidation the LocalTier's
	// Invalidator could not send; Key is "" for a whole namespace),
	// "decode" (an entry read
	// that cannot be used), "encode" (an answer the codec cannot encode)
	// or "key" (an argument that cannot be keyed).
	Op  string
	Key string // the backend key, or the namespace key for "clear"
	Err error  // the underlying error
}

// Error names the operation, the key and the cause.
func (e *BackendError) Error() string {
	return fmt.Sprintf("memo: %s %q: %v", e.Op, e.Key, e.Err)
}

// Unwrap returns the underlying error.
func (e *BackendError) Unwrap() error { return e.Err }

// SplitKey splits a key that memo built into its namespace key and its id, at
// the last ':'. Backends that keep per-namespace state (a generation counter,
// a partition key) use it. ok is false when key holds no ':'.
func SplitKey(key string) (ns, id string, ok bool) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == ':' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}
