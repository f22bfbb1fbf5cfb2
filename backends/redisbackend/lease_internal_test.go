package redisbackend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo/internal/testenv"
)

// A key and its lease share a hash slot on a Cluster, whatever braces the
// key holds; the cluster itself says so (CLUSTER KEYSLOT).
func TestLeaseKeySlot(t *testing.T) {
	addrs := strings.Split(testenv.Require(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := New(c)
	for _, key := range []string{
		"memo:ns:1", "memo:ns:~abc", "memo:ns:{tag}x", "memo:ns:a{b", "memo:ns:{}", "memo:ns:}{", "memo:ns:{{x}}", "",
	} {
		want, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(redisSlot(key)); !hasHashTag(key) && got != want {
			t.Errorf("redisSlot(%q) = %d, want %d", key, got, want)
		}
		lk := b.leaseKey(key)
		if got, err := c.ClusterKeySlot(ctx, lk).Result(); err != nil || got != want {
			t.Errorf("slot of leaseKey(%q) = %q: %d, %v; want %d", key, lk, got, err, want)
		}
	}
	for slot := range uint16(16384) {
		if redisSlot(slotTag(slot)) != slot {
			t.Fatalf("slotTag(%d) = %q is in slot %d", slot, slotTag(slot), redisSlot(slotTag(slot)))
		}
	}
}
