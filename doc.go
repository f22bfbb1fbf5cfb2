// Package memo memoizes typed Go functions on a pluggable cache.
//
// Wrap a function of the form func(context.Context, A) (R, error) and get
// back a function of the same type that answers from a cache:
//
//	getUser := memo.Wrap(fetchUser, memo.Expire(time.Minute))
//	u, err := getUser(ctx, 42) // a *User or User, never a map
//
// The type parameter R drives decoding, so a hit returns a real R, equal to
// what fn returned, and every caller gets a value of its own.
//
// # Keys
//
// Each answer is stored under "prefix:namespace:id". The prefix defaults to
// "memo" ([Prefix]); the namespace to the function's package path and name
// ([Namespace]; closures, method values and generic functions must be
// given one, since two of them would share a name). The id comes from
// the argument: strings, integers, booleans and floats as they are (strings
// hashed when long or unsafe), other types as the SHA-256 of a canonical
// encoding that is the same in every process, or what a [Keyer] or a
// [KeyFunc] says. See docs/keys-and-codecs.md.
//
// # Stored format
//
// Entries are versioned envelopes that carry the codec, a fingerprint of R's
// type, the times stored, fresh-until and stale-until, how long fn took,
// the kind of entry (an answer, a remembered not-found or error), an ETag
// and the payload. memo writes version 2 and reads versions 1 and 2. An
// entry written for another R (after a deploy that changed it), by another
// codec, in an unknown format version, or corrupt, is a miss and gets
// overwritten. See docs/keys-and-codecs.md and docs/freshness.md.
//
// # Tiers
//
// Without a backend, a function answers from the local tier: a bounded
// store of answers in the process ([DefaultLocalBytes], shared by every
// function without a backend) that keeps each answer decoded, so that a
// hit copies rather than decodes. With [WithBackend], answers live in that
// store of bytes: Redis (standalone, Cluster, Sentinel), Memcached and
// DynamoDB under backends/, or backends/memory for tests. A [Backend]
// stores opaque bytes; a [Clearer] can also drop a namespace. memo never
// looks at a backend's concrete type: a decorator around one changes
// nothing but what the decorator does.
//
// # Promises
//
// Two arguments that differ never share a key, and one function's entries
// are never served to another. Concurrent calls for one key in a process
// run fn at most once at a time, whatever the callers do. When a call
// returns an answer fn computed, the answer is stored: a later call, in
// any process sharing the backend, hits. After [Func.Forget] or
// [Func.Clear] returns, no call in the process returns an answer computed
// before it. A cache fault costs latency, never an answer, even under the
// caller's deadline. See [Func.Call].
//
// # HTTP
//
// Package httpadapter serves a memoized function as an http.Handler with
// ETag, Cache-Control, conditional requests and Cache-Status.
package memo
