package memo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// checkTimeout bounds each step of [Check] when its context has no
// deadline: ten times [DefaultTimeout], since a first call may open a
// connection (a TCP or TLS handshake, AUTH, credentials) where a call of
// memo's reuses one.
const checkTimeout = 10 * DefaultTimeout

// checkTTL is the expiry of Check's probe key: a key that Check could not
// delete goes away by itself.
const checkTTL = time.Minute

// Check tells whether b works: it writes a probe key, reads it back and
// deletes it, in three calls. It is meant for main, to fail fast on a wrong
// address, password or table, and for readiness probes.
//
// The probe key is "memo:check:" and a random id (whatever [Prefix] says:
// a store that limits which keys a client may use, such as a Redis ACL key
// pattern, must allow it), written for a minute with a value of random and
// binary bytes. Check deletes it, and after a failed read tries to; a key
// left behind expires. On Memcached, the generation counter of the
// "memo:check" namespace stays (see backends/memcachebackend). Check never
// calls Clear.
//
// A nil error means that b stored the value, returned the same bytes and
// deleted the key. Otherwise the error is a *[BackendError] whose Op is the
// step that failed ("set", "get" or "delete") and whose Key is the probe
// key; a read that returns other bytes, or none, is a "get" error. A store
// whose reads may lag its writes (dynamobackend with ConsistentRead(false),
// DAX) can fail Check by such a read.
//
// Check honours ctx. When ctx has no deadline, each step is bounded by
// 1 s (ten times [DefaultTimeout]): a stalled store fails Check after 1 s,
// and Check never takes more than 3 s. Check calls b itself: it neither
// waits for nor resets the circuit breaker of the functions using b (see
// [Breaker]). Check panics on a nil b.
func Check(ctx context.Context, b Backend) error {
	if b == nil || (reflect.ValueOf(b).Kind() == reflect.Pointer && reflect.ValueOf(b).IsNil()) {
		panic("memo: Check(ctx, nil)")
	}
	id := rand.Text()
	key := DefaultPrefix + ":check:" + id
	value := make([]byte, 0, len(id)+256)
	value = append(value, id...)
	for c := range 256 {
		value = append(value, byte(c))
	}

	step := func(op string, call func(context.Context) error) error {
		sctx := ctx
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(ctx, checkTimeout)
			defer cancel()
		}
		if err := call(sctx); err != nil {
			return &BackendError{Op: op, Key: key, Err: err}
		}
		return nil
	}

	if err := step("set", func(ctx context.Context) error {
		return b.Set(ctx, key, value, checkTTL)
	}); err != nil {
		return err
	}
	if err := step("get", func(ctx context.Context) error {
		got, ok, err := b.Get(ctx, key)
		switch {
		case err != nil:
			return err
		case !ok:
			return errors.New("a miss: the value just written is not there")
		case !bytes.Equal(got, value):
			return fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(value))
		}
		return nil
	}); err != nil {
		if ctx.Err() == nil {
			_ = step("delete", func(ctx context.Context) error { return b.Delete(ctx, key) })
		}
		return err
	}
	return step("delete", func(ctx context.Context) error { return b.Delete(ctx, key) })
}
