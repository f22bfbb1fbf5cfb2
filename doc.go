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
// ([Namespace]; anonymous functions must be given one). The id comes from
// the argument: strings, integers, booleans and floats as they are (strings
// hashed when long or unsafe), other types as the SHA-256 of a canonical
// encoding that is the same in every process, or what a [Keyer] or a
// [KeyFunc] says. See docs/keys.md.
//
// # Stored format
//
// Entries are versioned envelopes that carry the codec, a fingerprint of R's
// type, the times stored and fresh-until, an ETag and the payload. An entry
// written for another R (after a deploy that changed it), by another codec,
// in another format version, or corrupt, is a miss and gets overwritten.
//
// # Backends
//
// The default store is an in-memory one shared by the process
// (backends/memory). Redis (standalone, Cluster, Sentinel), Memcached and
// DynamoDB live under backends/. A [Backend] stores opaque bytes; a
// [Clearer] can also drop a namespace.
//
// # Concurrency and failure
//
// Concurrent calls for one key run fn once; each caller honours its own
// context and none fails because another gave up. The cache fails open:
// a backend error or timeout costs latency, never an answer. See [Func.Call].
//
// # HTTP
//
// Package httpadapter serves a memoized function as an http.Handler with
// ETag, Cache-Control, conditional requests and Cache-Status.
package memo
