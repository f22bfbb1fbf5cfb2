package reliability_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/bradfitz/gomemcache/memcache"
	"github.com/redis/go-redis/v9"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/backends/memcachebackend"
	"github.com/gomemo/memo/backends/memory"
	"github.com/gomemo/memo/backends/redisbackend"
)

// target is a backend under test, with a way to write straight into its
// server under a memo key.
type target struct {
	name string
	b    memo.Backend
	// raw stores v under key without going through memo: the raw client
	// for Redis, the backend's own Set for stores whose physical format is
	// the backend's (Memcached's header, DynamoDB's item layout, memory).
	raw func(ctx context.Context, key string, v []byte) error
}

type opener func(t *testing.T) target

// sharedTargets are the backends on the shared test servers (see
// scripts/servers.sh), plus the in-memory one. Each opener skips (fails in
// CI) when its server is not configured.
var sharedTargets = []struct {
	name string
	open opener
}{
	{"memory", openMemory},
	{"redis", openRedis},
	{"cluster", openCluster},
	{"memcached", openMemcached},
	{"dynamodb", openDynamo},
}

func env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	need(t, v != "", "%s is not set", name)
	return v
}

func viaSet(b memo.Backend) func(context.Context, string, []byte) error {
	return func(ctx context.Context, key string, v []byte) error { return b.Set(ctx, key, v, time.Minute) }
}

func openMemory(t *testing.T) target {
	b := memory.New()
	return target{name: "memory", b: b, raw: viaSet(b)}
}

// redisOptions are the client options of these tests: context deadlines
// applied to the socket, as redisbackend's documentation asks of callers
// that need prompt cancellation, and a pool for 64 callers.
func redisOptions(addr string) *redis.Options {
	return &redis.Options{Addr: addr, ContextTimeoutEnabled: true, PoolSize: 64}
}

func openRedis(t *testing.T) target {
	c := redis.NewClient(redisOptions(env(t, "MEMO_REDIS_ADDR")))
	t.Cleanup(func() { c.Close() })
	pingRedis(t, c)
	return target{name: "redis", b: redisbackend.New(c), raw: rawRedis(c)}
}

func openCluster(t *testing.T) target {
	addrs := strings.Split(env(t, "MEMO_REDIS_CLUSTER_ADDRS"), ",")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true, PoolSize: 64})
	t.Cleanup(func() { c.Close() })
	pingRedis(t, c)
	return target{name: "cluster", b: redisbackend.New(c), raw: rawRedis(c)}
}

func rawRedis(c redis.UniversalClient) func(context.Context, string, []byte) error {
	return func(ctx context.Context, key string, v []byte) error {
		return c.Set(ctx, key, v, time.Minute).Err()
	}
}

func pingRedis(t testing.TB, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis is not answering: %v", err)
	}
}

func openMemcached(t *testing.T) target {
	c := newMemcache(t, env(t, "MEMO_MEMCACHED_ADDR"), 2*time.Second)
	b := memcachebackend.New(c)
	return target{name: "memcached", b: b, raw: viaSet(b)}
}

func newMemcache(t testing.TB, addr string, timeout time.Duration) *memcache.Client {
	c := memcache.New(addr)
	c.MaxIdleConns = 64
	if timeout > 0 {
		c.Timeout = timeout
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openDynamo(t *testing.T) target {
	c := newDynamo(env(t, "MEMO_DYNAMODB_ENDPOINT"))
	b := dynamobackend.New(c, newTable(t, c))
	return target{name: "dynamodb", b: b, raw: viaSet(b)}
}

func newDynamo(endpoint string, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("x", "x", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	return dynamodb.NewFromConfig(cfg, optFns...)
}

var tableSeq atomic.Uint64

// newTable creates a table unique to this run, deleted when t ends.
func newTable(t testing.TB, c *dynamodb.Client) string {
	t.Helper()
	table := fmt.Sprintf("memo-rel-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, tableSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dynamobackend.CreateTable(ctx, c, table); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &table})
	})
	return table
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
