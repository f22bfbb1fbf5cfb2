package redisbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
)

// Leases (memo.Lease). The lease on a key is a key of its own beside it:
// the key followed by "\x00lease" (no memo key holds a NUL byte), placed
// in the key's hash slot on a Cluster, so that one script can check the
// lease and write the value in one round trip. Delete removes both keys;
// Clear removes a namespace's leases with its keys. A lease is taken with
// SET NX PX: one round trip; a fenced write and a release are one script
// call each (EVALSHA).
//
// On a Cluster, a key whose id holds a '{' with no '}' after it gets its
// lease under a prefixed name instead, which Clear does not see: Clear
// then leaves such a lease to end at its ttl (Forget and Set still void
// it).

var _ memo.Leaser = (*Backend)(nil)

const leaseSuffix = "\x00lease"

// leaseKey returns the name of key's lease, in key's hash slot.
func (b *Backend) leaseKey(key string) string {
	lk := key + leaseSuffix
	if b.cluster == nil || hasHashTag(key) {
		return lk // the key's own hash tag places both
	}
	tag := slotTag(redisSlot(key))
	if strings.IndexByte(key, '{') < 0 {
		return lk + "{" + tag + "}"
	}
	return "{" + tag + "}" + lk
}

// Acquire takes the lease on key for ttl (SET NX PX).
func (b *Backend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", false, fmt.Errorf("redisbackend: lease: ttl %v must be positive", ttl)
	}
	var t [16]byte
	rand.Read(t[:])
	token := hex.EncodeToString(t[:])
	cmd := redis.NewStatusCmd(ctx, "set", b.leaseKey(key), token, "nx", "px", ms(ttl))
	err := b.process(ctx, cmd)
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, wrap(ctx, "lease", err)
	}
	return token, true, nil
}

var acquireIfAbsent = redis.NewScript(`
if redis.call('exists', KEYS[1]) == 1 then return -1 end
if redis.call('set', KEYS[2], ARGV[1], 'nx', 'px', ARGV[2]) then return 1 end
return 0`)

// AcquireIfAbsent takes the lease on key for ttl only while key holds no
// value and no one holds the lease, in one script call; exists reports
// that key holds a value (memo then reads it rather than computing).
func (b *Backend) AcquireIfAbsent(ctx context.Context, key string, ttl time.Duration) (token string, ok, exists bool, err error) {
	if ttl <= 0 {
		return "", false, false, fmt.Errorf("redisbackend: lease: ttl %v must be positive", ttl)
	}
	var t [16]byte
	rand.Read(t[:])
	token = hex.EncodeToString(t[:])
	n, err := acquireIfAbsent.Run(ctx, b.client, []string{key, b.leaseKey(key)}, token, ms(ttl)).Int()
	if err != nil {
		return "", false, false, wrap(ctx, "lease", err)
	}
	switch n {
	case 1:
		return token, true, false, nil
	case -1:
		return "", false, true, nil
	}
	return "", false, false, nil
}

var setFenced = redis.NewScript(`
if redis.call('get', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
	redis.call('set', KEYS[1], ARGV[2])
else
	redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3])
end
redis.call('del', KEYS[2])
if ARGV[4] then
	local r = redis.pcall('publish', ARGV[4], ARGV[5])
	if type(r) == 'table' and r.err then return 2 end
end
return 1`)

var release = redis.NewScript(`
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0`)

// SetFenced stores value under key while token holds key's lease, and ends
// the lease, in one script call.
func (b *Backend) SetFenced(ctx context.Context, key string, value []byte, ttl time.Duration, token string) (bool, error) {
	return b.setFenced(ctx, key, value, ttl, token, "", "")
}

// setFenced is SetFenced, publishing msg on channel from the script when it
// stored (standalone Redis only: channel "" publishes nothing). A PUBLISH
// that Redis refuses (an ACL, say) does not undo the write: stored is
// true and the error a publish error.
func (b *Backend) setFenced(ctx context.Context, key string, value []byte, ttl time.Duration, token, channel, msg string) (bool, error) {
	if len(value) > b.maxValue {
		return false, fmt.Errorf("redisbackend: set: %d-byte value exceeds the %d-byte limit: %w",
			len(value), b.maxValue, memo.ErrTooLarge)
	}
	if ttl < 0 {
		return false, fmt.Errorf("redisbackend: set: negative ttl %v", ttl)
	}
	var px int64
	if ttl > 0 {
		px = ms(ttl)
	}
	keys := []string{key, b.leaseKey(key)}
	var cmd *redis.Cmd
	if channel != "" {
		cmd = setFenced.Run(ctx, b.client, keys, token, value, px, channel, msg)
	} else {
		cmd = setFenced.Run(ctx, b.client, keys, token, value, px)
	}
	n, err := cmd.Int()
	if err != nil {
		if isTooLarge(err) {
			return false, fmt.Errorf("redisbackend: set: %w: %w", memo.ErrTooLarge, err)
		}
		return false, wrap(ctx, "set", err)
	}
	if n == 2 {
		return true, fmt.Errorf("%w: redisbackend: publish: Redis refused the PUBLISH of channel %q in the fenced write's script", memo.ErrNotPublished, channel)
	}
	return n == 1, nil
}

// Release ends key's lease if token still holds it.
func (b *Backend) Release(ctx context.Context, key, token string) error {
	if err := release.Run(ctx, b.client, []string{b.leaseKey(key)}, token).Err(); err != nil {
		return wrap(ctx, "lease", err)
	}
	return nil
}

// Void ends any lease on key.
func (b *Backend) Void(ctx context.Context, key string) error {
	if err := b.process(ctx, redis.NewIntCmd(ctx, "unlink", b.leaseKey(key))); err != nil {
		return wrap(ctx, "lease", err)
	}
	return nil
}

// ms rounds d up to whole milliseconds.
func ms(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

// hasHashTag reports whether Redis Cluster hashes key by a tag: a '{'
// followed, later, by a '}' with at least one byte between.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(key[i+1:], '}')
	return j > 0
}

// redisSlot is the hash slot of a key without a hash tag: CRC16 (XMODEM)
// mod 16384, as Redis Cluster computes it.
func redisSlot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

var slotTags = sync.OnceValue(func() *[16384]string {
	var tags [16384]string
	left := len(tags)
	for i := 0; left > 0; i++ {
		s := strconv.FormatInt(int64(i), 36)
		if slot := redisSlot(s); tags[slot] == "" {
			tags[slot] = s
			left--
		}
	}
	return &tags
})

// slotTag returns a short string whose hash slot is slot.
func slotTag(slot uint16) string { return slotTags()[slot] }
