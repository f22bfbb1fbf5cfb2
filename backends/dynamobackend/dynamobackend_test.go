package dynamobackend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/backendtest"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/internal/testenv"
)

// newClient returns a client for the server at MEMO_DYNAMODB_ENDPOINT, or
// skips (fails in CI) when it is unset. optFns adjust the client options.
func newClient(t testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	endpoint := testenv.Require(t, "MEMO_DYNAMODB_ENDPOINT")
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("x", "x", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	return dynamodb.NewFromConfig(cfg, optFns...)
}

var tableSeq atomic.Uint64

// newTable creates a table unique to this test run (twice, to check that
// CreateTable is idempotent) and deletes it when the test ends.
func newTable(t testing.TB, client *dynamodb.Client) string {
	t.Helper()
	table := fmt.Sprintf("memo-test-%d-%x-%d", os.Getpid(), rand.Uint32(), tableSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 2 {
		if err := dynamobackend.CreateTable(ctx, client, table); err != nil {
			t.Fatalf("CreateTable #%d: %v", i+1, err)
		}
	}
	t.Cleanup(func() {
		_, err := client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
		if err != nil {
			t.Errorf("DeleteTable(%s): %v", table, err)
		}
	})
	return table
}

func TestConformance(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	backendtest.Run(t, func(t *testing.T) memo.Backend {
		return dynamobackend.New(client, table)
	}, backendtest.Options{TooLarge: 500 << 10, MaxValue: 300 << 10, ExpirySlack: time.Second})
}

// TestCreateTableTTL: CreateTable tolerates a server without the TTL API
// (dynalite, in newTable) but reports other failures, and leaves TTL
// alone when it is already on.
func TestCreateTableTTL(t *testing.T) {
	var describe, update atomic.Value // canned answers, "" to pass through
	var updates atomic.Int64
	describe.Store("")
	update.Store("")
	// Describe- and UpdateTimeToLive.
	ic := &interceptor{target: "TimeToLive", next: http.DefaultTransport}
	ic.fn = func(req *http.Request, _ []byte) (*http.Response, error) {
		answer := describe.Load().(string)
		if strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".UpdateTimeToLive") {
			updates.Add(1)
			answer = update.Load().(string)
		}
		if answer == "" {
			return nil, nil
		}
		resp := jsonResponse(req, answer)
		if strings.Contains(answer, "__type") {
			resp.StatusCode, resp.Status = 400, "400 Bad Request"
		}
		return resp, nil
	}
	client := newClient(t, func(o *dynamodb.Options) { o.HTTPClient = ic })
	table := newTable(t, client)
	ctx := context.Background()

	update.Store(`{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"boom"}`)
	if err := dynamobackend.CreateTable(ctx, client, table); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("CreateTable with a failing UpdateTimeToLive = %v, want the error", err)
	}
	describe.Store(`{"TimeToLiveDescription":{"AttributeName":"other","TimeToLiveStatus":"ENABLED"}}`)
	if err := dynamobackend.CreateTable(ctx, client, table); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("CreateTable with TTL on another attribute = %v, want an error", err)
	}
	describe.Store(`{"TimeToLiveDescription":{"AttributeName":"exp","TimeToLiveStatus":"ENABLED"}}`)
	updates.Store(0)
	if err := dynamobackend.CreateTable(ctx, client, table); err != nil {
		t.Errorf("CreateTable with TTL on = %v", err)
	}
	if n := updates.Load(); n != 0 {
		t.Errorf("CreateTable with TTL on called UpdateTimeToLive %d times", n)
	}
}

func putRaw(t *testing.T, client *dynamodb.Client, table, ns, id string, extra map[string]types.AttributeValue) {
	t.Helper()
	item := map[string]types.AttributeValue{
		dynamobackend.AttrNamespace: &types.AttributeValueMemberS{Value: ns},
		dynamobackend.AttrID:        &types.AttributeValueMemberS{Value: id},
		dynamobackend.AttrValue:     &types.AttributeValueMemberB{Value: []byte("v")},
	}
	for k, v := range extra {
		item[k] = v
	}
	if _, err := client.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// TestExpiredNotYetDeleted: DynamoDB deletes expired items days late; until
// then Get must see them as misses.
func TestExpiredNotYetDeleted(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ns := testenv.NS(t, "expired")
	past, future := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	putRaw(t, client, table, ns, "old", map[string]types.AttributeValue{
		dynamobackend.AttrExpiry:       num(past.Unix() + 1), // rounded up, still in the past's second
		dynamobackend.AttrExpiryMillis: num(past.UnixMilli()),
	})
	putRaw(t, client, table, ns, "fresh", map[string]types.AttributeValue{
		dynamobackend.AttrExpiry:       num(future.Unix()),
		dynamobackend.AttrExpiryMillis: num(future.UnixMilli()),
	})
	putRaw(t, client, table, ns, "forever", nil)
	testenv.WantGet(t, b, ns+":old", "")
	testenv.WantGet(t, b, ns+":fresh", "v")
	testenv.WantGet(t, b, ns+":forever", "v")
}

// TestStoredItem checks the stored attributes: exp and expms rounded up,
// no expiry attributes without a ttl, no value attribute for an empty value.
func TestStoredItem(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ctx := context.Background()
	ns := testenv.NS(t, "stored")
	before := time.Now()
	if err := b.Set(ctx, ns+":ttl", []byte("v"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if err := b.Set(ctx, ns+":nottl", nil, 0); err != nil {
		t.Fatal(err)
	}
	get := func(id string) map[string]types.AttributeValue {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: &table, ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{
				dynamobackend.AttrNamespace: &types.AttributeValueMemberS{Value: ns},
				dynamobackend.AttrID:        &types.AttributeValueMemberS{Value: id},
			}})
		if err != nil || out.Item == nil {
			t.Fatalf("GetItem(%s) = %v, %v", id, out, err)
		}
		return out.Item
	}
	it := get("ttl")
	n := func(a string) int64 {
		v, err := strconv.ParseInt(it[a].(*types.AttributeValueMemberN).Value, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	lo, hi := before.Add(1500*time.Millisecond), after.Add(1500*time.Millisecond)
	if ms := n(dynamobackend.AttrExpiryMillis); ms < lo.UnixMilli() || ms > hi.UnixMilli()+1 {
		t.Errorf("%s = %d, want in [%d, %d]", dynamobackend.AttrExpiryMillis, ms, lo.UnixMilli(), hi.UnixMilli()+1)
	}
	if s := n(dynamobackend.AttrExpiry); s*1000 < n(dynamobackend.AttrExpiryMillis) || s*1000 >= n(dynamobackend.AttrExpiryMillis)+1000 {
		t.Errorf("%s = %d is not %s = %d rounded up to seconds", dynamobackend.AttrExpiry, s, dynamobackend.AttrExpiryMillis, n(dynamobackend.AttrExpiryMillis))
	}
	it = get("nottl")
	for _, a := range []string{dynamobackend.AttrValue, dynamobackend.AttrExpiry, dynamobackend.AttrExpiryMillis} {
		if _, ok := it[a]; ok {
			t.Errorf("item without ttl and value has attribute %s", a)
		}
	}
}

// TestClearPages clears a namespace of 120 keys read in Query pages of 7,
// so that pages and 25-key batches do not line up.
func TestClearPages(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	dynamobackend.SetLimits(b, 0, 7)
	ctx := context.Background()
	ns, other := testenv.NS(t, "pages"), testenv.NS(t, "pages-other")
	for i := range 120 {
		for _, n := range []string{ns, other} {
			if err := b.Set(ctx, fmt.Sprintf("%s:%d", n, i), []byte("x"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Clear(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if n := count(t, client, table, ns); n != 0 {
		t.Errorf("%d items left in the cleared namespace", n)
	}
	if n := count(t, client, table, other); n != 120 {
		t.Errorf("%d items in the other namespace, want 120", n)
	}
}

func count(t *testing.T, client *dynamodb.Client, table, ns string) int {
	t.Helper()
	out, err := client.Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 &table,
		KeyConditionExpression:    aws.String("#ns = :ns"),
		ExpressionAttributeNames:  map[string]string{"#ns": dynamobackend.AttrNamespace},
		ExpressionAttributeValues: map[string]types.AttributeValue{":ns": &types.AttributeValueMemberS{Value: ns}},
		Select:                    types.SelectCount,
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(out.Count)
}

// interceptor sits between the SDK and the server. For each request whose
// X-Amz-Target ends in target, fn may answer instead of the server (a
// non-nil response or error).
type interceptor struct {
	target string
	fn     func(req *http.Request, body []byte) (*http.Response, error)
	next   http.RoundTripper
}

func (i *interceptor) Do(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.Header.Get("X-Amz-Target"), i.target) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		if resp, err := i.fn(req, body); resp != nil || err != nil {
			return resp, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return i.next.RoundTrip(req)
}

func jsonResponse(req *http.Request, body string) *http.Response {
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// TestClearRetriesUnprocessed: the server leaves every other BatchWriteItem
// entirely unprocessed; Clear resends until all is deleted.
func TestClearRetriesUnprocessed(t *testing.T) {
	var calls, refused atomic.Int64
	ic := &interceptor{target: "BatchWriteItem", next: http.DefaultTransport}
	ic.fn = func(req *http.Request, body []byte) (*http.Response, error) {
		if calls.Add(1)%2 == 0 {
			return nil, nil
		}
		refused.Add(1)
		var in struct{ RequestItems json.RawMessage }
		if err := json.Unmarshal(body, &in); err != nil {
			t.Errorf("BatchWriteItem body: %v", err)
			return nil, nil
		}
		return jsonResponse(req, `{"UnprocessedItems":`+string(in.RequestItems)+`}`), nil
	}
	client := newClient(t, func(o *dynamodb.Options) { o.HTTPClient = ic })
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ctx := context.Background()
	ns := testenv.NS(t, "unprocessed")
	for i := range 60 {
		if err := b.Set(ctx, fmt.Sprintf("%s:%d", ns, i), []byte("x"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Clear(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if n := count(t, client, table, ns); n != 0 {
		t.Errorf("%d items left after Clear", n)
	}
	if refused.Load() < 3 {
		t.Errorf("only %d of %d BatchWriteItem calls were refused; the test did not exercise retries", refused.Load(), calls.Load())
	}

	// A server that never processes anything: Clear gives up with an error.
	calls.Store(0)
	ic.fn = func(req *http.Request, body []byte) (*http.Response, error) {
		calls.Add(1)
		var in struct{ RequestItems json.RawMessage }
		json.Unmarshal(body, &in)
		return jsonResponse(req, `{"UnprocessedItems":`+string(in.RequestItems)+`}`), nil
	}
	if err := b.Set(ctx, ns+":stuck", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := b.Clear(ctx2, ns)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Clear against a stuck server, 200ms deadline = %v, want DeadlineExceeded", err)
	}
}

// TestCancelInFlight: a request in flight when ctx ends returns an error
// wrapping ctx's error.
func TestCancelInFlight(t *testing.T) {
	// A server that answers after 5s; the transport gives up when the
	// request's ctx ends, as net/http does.
	slow := func(req *http.Request, _ []byte) (*http.Response, error) {
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(5 * time.Second):
			return jsonResponse(req, `{}`), nil
		}
	}
	ic := &interceptor{next: http.DefaultTransport, fn: func(*http.Request, []byte) (*http.Response, error) { return nil, nil }}
	client := newClient(t, func(o *dynamodb.Options) { o.HTTPClient = ic })
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ns := testenv.NS(t, "inflight")
	for _, target := range []string{"GetItem", "PutItem", "DeleteItem", "Query"} {
		ic.target, ic.fn = target, slow
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		var err error
		switch target {
		case "GetItem":
			_, _, err = b.Get(ctx, ns+":k")
		case "PutItem":
			err = b.Set(ctx, ns+":k", []byte("v"), time.Minute)
		case "DeleteItem":
			err = b.Delete(ctx, ns+":k")
		case "Query":
			err = b.Clear(ctx, ns)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s cancelled in flight: %v, want context.Canceled", target, err)
		}
		cancel()
	}
}

// TestServerTooLarge: with the local check lifted, the server's item-size
// ValidationException maps to ErrTooLarge.
func TestServerTooLarge(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	dynamobackend.SetLimits(b, 10<<20, 0)
	err := b.Set(context.Background(), testenv.NS(t, "srvbig")+":k", make([]byte, 450<<10), time.Minute)
	if !errors.Is(err, memo.ErrTooLarge) {
		t.Fatalf("Set(450 KiB) = %v, want ErrTooLarge", err)
	}
}

// TestLimit: the largest item the local check lets through is one the
// server accepts.
func TestLimit(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ctx := context.Background()
	ns := testenv.NS(t, "limit")
	k := ns + ":k"
	var max int
	for n := dynamobackend.MaxItemSize; n > 0; n-- {
		if err := b.Set(ctx, k, make([]byte, n), time.Hour); err == nil {
			max = n
			break
		} else if !errors.Is(err, memo.ErrTooLarge) {
			t.Fatalf("Set(%d bytes) = %v", n, err)
		}
	}
	t.Logf("largest value with a %d-byte key and a ttl: %d bytes", len(k), max)
	if slack := dynamobackend.MaxItemSize - max - len(k); slack > 64 {
		t.Errorf("largest value %d: %d bytes wasted", max, slack)
	}
	if v, ok, err := b.Get(ctx, k); err != nil || !ok || len(v) != max {
		t.Fatalf("Get = %d bytes, %v, %v", len(v), ok, err)
	}
}

// TestKeys: empty namespaces and ids, and keys memo never builds.
func TestKeys(t *testing.T) {
	client := newClient(t)
	table := newTable(t, client)
	b := dynamobackend.New(client, table)
	ctx := context.Background()
	for _, k := range []string{":x", "ns:", ":", "a:b:c"} {
		if err := b.Set(ctx, k, []byte(k), time.Minute); err != nil {
			t.Fatalf("Set(%q) = %v", k, err)
		}
	}
	for _, k := range []string{":x", "ns:", ":", "a:b:c"} {
		testenv.WantGet(t, b, k, k)
	}
	if err := b.Clear(ctx, ""); err != nil {
		t.Fatal(err)
	}
	testenv.WantGet(t, b, ":x", "")
	testenv.WantGet(t, b, ":", "")
	testenv.WantGet(t, b, "ns:", "ns:")
	for _, k := range []string{"nocolon", "a b:c", "a:b\x00", "a:\xff"} {
		if err := b.Set(ctx, k, []byte("v"), time.Minute); err == nil {
			t.Errorf("Set(%q) = nil, want an error", k)
		}
		if _, _, err := b.Get(ctx, k); err == nil {
			t.Errorf("Get(%q) = nil error", k)
		}
	}
	if err := b.Clear(ctx, " "); err != nil {
		t.Errorf("Clear(\" \") = %v, want nil (nothing there)", err)
	}
	testenv.WantGet(t, b, "ns:", "ns:")
	if err := b.Set(ctx, "ns:k", []byte("v"), -time.Second); err == nil {
		t.Error("Set(negative ttl) = nil, want an error")
	}
}

// BenchmarkGet compares a plain GetItem with Backend.Get for a 200-byte
// value, both with consistent reads.
func BenchmarkGet(b *testing.B) {
	client := newClient(b)
	table := newTable(b, client)
	be := dynamobackend.New(client, table)
	ctx := context.Background()
	ns := testenv.NS(b, "bench")
	if err := be.Set(ctx, ns+":k", bytes.Repeat([]byte("v"), 200), time.Hour); err != nil {
		b.Fatal(err)
	}
	raw := func() {
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: &table, ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{
				dynamobackend.AttrNamespace: &types.AttributeValueMemberS{Value: ns},
				dynamobackend.AttrID:        &types.AttributeValueMemberS{Value: "k"},
			},
		})
		if err != nil || out.Item == nil {
			b.Fatal(err)
		}
	}
	backend := func() {
		if _, ok, err := be.Get(ctx, ns+":k"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	for _, bm := range []struct {
		name string
		fn   func()
	}{{"raw-GetItem", raw}, {"backend-Get", backend}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.fn()
			}
		})
		b.Run(bm.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.fn()
				}
			})
		})
	}
}
