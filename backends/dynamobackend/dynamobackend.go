// Package dynamobackend is a [memo.Backend] on Amazon DynamoDB, through the
// AWS SDK for Go v2.
//
//	cfg, err := config.LoadDefaultConfig(ctx)
//	client := dynamodb.NewFromConfig(cfg)
//	if err := dynamobackend.CreateTable(ctx, client, "memo"); err != nil { ... }
//	b := dynamobackend.New(client, "memo")
//
// # Clients
//
// [New] takes an [API]: the six data-plane calls the backend makes, with
// the signatures of [*dynamodb.Client], which satisfies it. Anything else
// with those methods fits too: a DynamoDB Accelerator (DAX) client, a
// client wrapped for metrics, tracing or fault injection, or a fake in a
// test. [CreateTable] takes a [TableAPI] (the control-plane calls), which
// DAX does not serve: create the table with a *dynamodb.Client.
//
// # Table layout
//
// Every memo namespace is one partition: a key "<ns>:<id>" is split at its
// last ':' (see [memo.SplitKey]) into the partition key [AttrNamespace] (S)
// and the sort key [AttrID] (S). DynamoDB refuses empty key attributes, so
// an empty namespace or id is stored as a single space, which no memo key
// contains (keys are printable ASCII without spaces; the backend refuses
// others, and keys without ':'). An item also holds [AttrValue] (B; absent
// for an empty value) and, when it has a ttl, [AttrExpiry] (N, Unix
// seconds, rounded up) for DynamoDB's Time to Live and [AttrExpiryMillis]
// (N, Unix milliseconds, rounded up). An item may also hold a lease
// ([AttrLease], [AttrLeaseMillis]; see [Backend.Acquire]). [CreateTable]
// creates such a table (on-demand billing) with TTL on [AttrExpiry]; a
// table made by other means needs the same key schema.
//
// # Expiry
//
// DynamoDB deletes expired items lazily, often days after they expire, so
// [Backend.Get] checks [AttrExpiryMillis] itself against the local clock and
// treats an expired item as a miss: expiry is exact to the millisecond,
// given clocks that agree between the processes that write and read.
//
// # Consistency
//
// Get uses strongly consistent reads by default, so that a Get sees every
// Set, Delete and Clear that returned before it. [ConsistentRead](false)
// halves the read cost at the price of reads that may lag writes (about a
// second on DynamoDB; up to DAX's item cache TTL for writes that bypass
// the DAX cluster): see [ConsistentRead] for exactly what a lagging read
// can and cannot return.
//
// # Leases
//
// Backend implements [memo.Leaser] (for [memo.Lease]) with conditional
// writes on the key's own item, checked against its latest state whatever
// [ConsistentRead] says: taking a lease is one UpdateItem on a key without
// a live value (two on one with a value, or when the lease is held), the
// fenced write one PutItem that checks the lease and writes in one atomic
// step, so that a Forget, Clear or Set in any process voids an answer
// computed before it. Delete and Clear, which delete the item, void its
// lease. An item holding only a lease is a miss. See [Backend.Acquire].
//
// # Limits
//
// DynamoDB items are at most 400 KB (409600 bytes), counting attribute names
// and the key. Set refuses a larger item before sending it (the estimate
// errs on the large side by a few bytes) and maps the server's item-size
// ValidationException to the same error; both wrap [memo.ErrTooLarge].
//
// # Contexts, errors and concurrency
//
// A [Backend] is safe for concurrent use (as its [API] must be). Every
// method passes ctx to the client; a *dynamodb.Client abandons a request
// when ctx ends, and the error then wraps ctx.Err(), so
// errors.Is(err, context.Canceled) holds after a cancellation. The SDK's
// retryer (configured on the client) retries throttling and transient
// errors before a method returns one. Another [API] gives these
// guarantees only if it honours ctx and retries likewise; every error it
// returns is passed on, wrapped.
package dynamobackend

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/gomemo/memo"
)

// Attribute names of the items the backend stores.
const (
	AttrNamespace    = "ns"    // partition key (S): the namespace key, or " " if empty
	AttrID           = "id"    // sort key (S): the id, or " " if empty
	AttrValue        = "value" // the value (B); absent when the value is empty
	AttrExpiry       = "exp"   // expiry in Unix seconds, rounded up (N), for DynamoDB's TTL
	AttrExpiryMillis = "expms" // expiry in Unix milliseconds, rounded up (N), checked by Get
)

// MaxItemSize is DynamoDB's item size limit, 400 KB.
const MaxItemSize = 400 << 10

const (
	emptyPlaceholder = " "
	batchSize        = 25 // BatchWriteItem's limit
	clearWorkers     = 4  // BatchWriteItem calls in flight during a Clear
	batchAttempts    = 8  // tries for the unprocessed part of one batch
)

// API is the set of DynamoDB calls that a [Backend] makes, with the
// signatures of the AWS SDK for Go v2: GetItem (Get), PutItem (Set and
// SetFenced), DeleteItem (Delete), Query and BatchWriteItem (Clear), and
// UpdateItem (the leases of [memo.Lease]: Acquire, Release, Void).
// [*dynamodb.Client] implements it, and so can a DAX client or a wrapper
// that instruments, limits or fakes calls. The backend passes no optFns
// and keeps no input after a call returns. An implementation must be safe
// for concurrent use, and must not keep or share the outputs it returns:
// Get hands the bytes of the value attribute to its caller as the
// caller's own.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// TableAPI is the set of DynamoDB calls that [CreateTable] makes, with the
// signatures of the AWS SDK for Go v2. [*dynamodb.Client] implements it.
// These are control-plane calls, which DAX does not serve.
type TableAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

var (
	_ API      = (*dynamodb.Client)(nil)
	_ TableAPI = (*dynamodb.Client)(nil)
)

// Backend is a [memo.Backend] and [memo.Clearer] on one DynamoDB table. It is
// safe for concurrent use by multiple goroutines. Create it with [New].
type Backend struct {
	client     API
	table      string
	consistent bool

	// Overridable by tests.
	maxItem   int
	pageLimit int32 // Query page size in Clear; 0: DynamoDB's 1 MB pages
}

var (
	_ memo.Backend = (*Backend)(nil)
	_ memo.Clearer = (*Backend)(nil)
)

// Option configures a [Backend] in [New]. Options are values, made by
// [ConsistentRead]; when the same option is given twice the last one wins.
// The zero Option is invalid: New panics on it.
type Option struct {
	apply func(*Backend)
}

// ConsistentRead chooses how Get reads: strongly consistent GetItem (true,
// the default) or eventually consistent (false). Clear always queries with
// consistent reads, whatever this option says.
//
// What false buys: an eventually consistent read costs half the read
// capacity of a strong one (half a read unit per 4 KB of item) and may be
// answered by any replica of the item; through DAX it is what the item
// cache serves at all, since DAX passes strongly consistent reads through
// to DynamoDB and caches nothing for them.
//
// What it costs: a Get may see the item as it was shortly before. DynamoDB
// makes all copies agree usually within a second; through DAX, a write
// made through the same DAX cluster reaches its nodes usually within a
// second, and a write that bypassed it (straight to DynamoDB, or through
// another DAX cluster) only when the cached copy or cached miss expires
// (the cluster's item TTL, 5 minutes by default). Within that lag:
//
//   - A Get right after a Set may miss. memo then runs fn again and writes
//     its answer again: read-your-writes across calls and processes is
//     lost for the lag, at the cost of an extra computation and write.
//   - A Get right after a Set that replaced an item may return the
//     previous value, and one right after a Delete or Clear may return the
//     deleted item: an answer that memo's Forget, Clear or Set has just
//     replaced may still be served during the lag, in this process too,
//     within the freshness it was stored with.
//
// A Get never returns a value that was not stored under its key, a mix of
// two writes, or an item past its expiry ([AttrExpiryMillis] is checked on
// every read, and memo checks freshness too). Use it where a briefly stale
// answer after an invalidation is acceptable; keep the default where
// Forget must take effect at once.
func ConsistentRead(on bool) Option {
	return Option{func(b *Backend) { b.consistent = on }}
}

// New returns a backend that stores in table through client, configured
// by opts. client is usually a [*dynamodb.Client]; any [API] fits, such
// as a DAX client (then see [ConsistentRead]) or an instrumented wrapper.
// The table must exist with the layout described in the package
// documentation (see [CreateTable]); New makes no request and does not
// check it. The caller keeps ownership of client, whose retryer and HTTP
// timeouts apply to every call. New panics with a "dynamobackend: ..."
// message on a nil client (nil, or a nil pointer in the interface), a
// table name that DynamoDB would refuse (3 to 255 characters of a-z, A-Z,
// 0-9, '_', '-' and '.'), or a zero Option.
func New(client API, table string, opts ...Option) *Backend {
	if client == nil || isNilPointer(client) {
		panic("dynamobackend: New(nil, ...): a client is required (a *dynamodb.Client or another API)")
	}
	if err := checkTableName(table); err != nil {
		panic(fmt.Sprintf("dynamobackend: New: table name %q: %v", table, err))
	}
	b := &Backend{client: client, table: table, consistent: true, maxItem: MaxItemSize}
	for i, o := range opts {
		if o.apply == nil {
			panic(fmt.Sprintf("dynamobackend: New: option %d is the zero Option; make options with ConsistentRead", i))
		}
		o.apply(b)
	}
	return b
}

// isNilPointer reports whether v holds a nil pointer, such as a nil
// *dynamodb.Client, whose first call would panic.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// checkTableName reports why DynamoDB would refuse name as a table name.
func checkTableName(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return fmt.Errorf("%d characters, want 3 to 255", len(name))
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("character %q at %d, want a-z, A-Z, 0-9, '_', '-' or '.'", c, i)
		}
	}
	return nil
}

// Get returns the value stored under key with one GetItem. A missing item,
// or one whose [AttrExpiryMillis] has passed (DynamoDB has not deleted it
// yet), is a miss. The returned slice is the caller's. Errors: ctx ended
// (wrapping ctx.Err()), an invalid key (no ':', spaces, control or
// non-ASCII bytes), any SDK error, a malformed item.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("dynamobackend: get %q: %w", key, err)
	}
	ns, id, err := splitKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("dynamobackend: get %q: %w", key, err)
	}
	out, err := b.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      &b.table,
		Key:            itemKey(ns, id),
		ConsistentRead: aws.Bool(b.consistent),
	})
	if err != nil {
		return nil, false, wrapErr(ctx, "get", key, err)
	}
	if out.Item == nil {
		return nil, false, nil
	}
	if a, ok := out.Item[AttrExpiryMillis]; ok {
		n, ok := a.(*types.AttributeValueMemberN)
		if !ok {
			return nil, false, fmt.Errorf("dynamobackend: get %q: attribute %s is %T, want N", key, AttrExpiryMillis, a)
		}
		ms, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("dynamobackend: get %q: attribute %s: %w", key, AttrExpiryMillis, err)
		}
		if time.Now().UnixMilli() >= ms {
			return nil, false, nil
		}
	}
	a, ok := out.Item[AttrValue]
	if !ok {
		return []byte{}, true, nil
	}
	v, ok := a.(*types.AttributeValueMemberB)
	if !ok {
		return nil, false, fmt.Errorf("dynamobackend: get %q: attribute %s is %T, want B", key, AttrValue, a)
	}
	if v.Value == nil {
		return []byte{}, true, nil
	}
	return v.Value, true, nil
}

// Set stores value under key for ttl (0: no expiry) with one PutItem,
// replacing any previous item (and so ending any lease on it). An item
// over 400 KB is refused without a request, with an error wrapping
// [memo.ErrTooLarge] (as is the server's own refusal), and any previous
// item under key is left as it was. Other errors: ctx ended (wrapping
// ctx.Err()), a negative ttl, an invalid key, any SDK error. Set does not
// retain value.
func (b *Backend) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dynamobackend: set %q: %w", key, err)
	}
	if ttl < 0 {
		return fmt.Errorf("dynamobackend: set %q: negative ttl %v", key, ttl)
	}
	item, err := b.item(key, value, ttl)
	if err != nil {
		return err
	}
	// The SDK serializes value before PutItem returns and keeps no
	// reference to it.
	_, err = b.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: &b.table, Item: item})
	if err != nil {
		return wrapErr(ctx, "set", key, err)
	}
	return nil
}

// item returns the item that stores value under key for ttl, or an error
// for an invalid key or an item over the size limit.
func (b *Backend) item(key string, value []byte, ttl time.Duration) (map[string]types.AttributeValue, error) {
	ns, id, err := splitKey(key)
	if err != nil {
		return nil, fmt.Errorf("dynamobackend: set %q: %w", key, err)
	}
	item := itemKey(ns, id)
	size := len(AttrNamespace) + len(ns) + len(AttrID) + len(id)
	if len(value) > 0 {
		item[AttrValue] = &types.AttributeValueMemberB{Value: value}
		size += len(AttrValue) + len(value)
	}
	if ttl > 0 {
		sec, ms := expiry(time.Now(), ttl)
		s, m := strconv.FormatInt(sec, 10), strconv.FormatInt(ms, 10)
		item[AttrExpiry] = &types.AttributeValueMemberN{Value: s}
		item[AttrExpiryMillis] = &types.AttributeValueMemberN{Value: m}
		// A number takes about one byte per two digits plus one; count
		// one per digit plus one to stay on the safe side.
		size += len(AttrExpiry) + len(s) + 1 + len(AttrExpiryMillis) + len(m) + 1
	}
	if size > b.maxItem {
		return nil, fmt.Errorf("dynamobackend: set %q: %d-byte value makes a %d-byte item, over DynamoDB's %d: %w",
			key, len(value), size, b.maxItem, memo.ErrTooLarge)
	}
	return item, nil
}

// Delete removes key with one DeleteItem; a missing key is not an error.
// Errors: ctx ended (wrapping ctx.Err()), an invalid key, any SDK error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dynamobackend: delete %q: %w", key, err)
	}
	ns, id, err := splitKey(key)
	if err != nil {
		return fmt.Errorf("dynamobackend: delete %q: %w", key, err)
	}
	_, err = b.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &b.table, Key: itemKey(ns, id)})
	if err != nil {
		return wrapErr(ctx, "delete", key, err)
	}
	return nil
}

// Clear deletes every item of namespace ns, which is one partition: it
// queries the partition's keys (consistent reads, every page) and deletes
// them with BatchWriteItem, 25 per request and up to 4 requests in flight,
// retrying the items DynamoDB leaves unprocessed with exponential backoff
// (up to 8 tries per batch). Its cost grows with the size of the namespace:
// about one write unit per item. Other namespaces, including those that ns
// is a prefix of or that nest under it, are separate partitions and are
// untouched. Items written concurrently may or may not survive. Errors: ctx
// ended (wrapping ctx.Err()), any SDK error, items still unprocessed after
// the retries; on error some items may already be deleted. A namespace that
// no memo key can have (one with spaces or control bytes) is empty, and
// Clear of it does nothing.
func (b *Backend) Clear(ctx context.Context, ns string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dynamobackend: clear %q: %w", ns, err)
	}
	if !validKeyPart(ns) {
		return nil
	}
	part := ns
	if part == "" {
		part = emptyPlaceholder
	}
	parent := ctx
	// ctx also ends at the first failure, to stop the other requests.
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		batches = make(chan []types.WriteRequest)
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel(err) })
	}
	for range clearWorkers {
		wg.Go(func() {
			for reqs := range batches {
				if err := b.writeBatch(ctx, reqs); err != nil {
					fail(err)
				}
			}
		})
	}
	send := func(reqs []types.WriteRequest) bool {
		select {
		case batches <- reqs:
			return true
		case <-ctx.Done():
			return false
		}
	}

	in := &dynamodb.QueryInput{
		TableName:                &b.table,
		KeyConditionExpression:   aws.String("#ns = :ns"),
		ProjectionExpression:     aws.String("#ns, #id"),
		ExpressionAttributeNames: map[string]string{"#ns": AttrNamespace, "#id": AttrID},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":ns": &types.AttributeValueMemberS{Value: part},
		},
		ConsistentRead: aws.Bool(true),
	}
	if b.pageLimit > 0 {
		in.Limit = aws.Int32(b.pageLimit)
	}
	pages := dynamodb.NewQueryPaginator(b.client, in)
	reqs := make([]types.WriteRequest, 0, batchSize)
query:
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			fail(err)
			break
		}
		for _, k := range page.Items {
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}})
			if len(reqs) == batchSize {
				if !send(reqs) {
					break query
				}
				reqs = make([]types.WriteRequest, 0, batchSize)
			}
		}
	}
	if len(reqs) > 0 && ctx.Err() == nil {
		send(reqs)
	}
	close(batches)
	wg.Wait()

	if first == nil {
		first = parent.Err() // the caller's ctx ended between requests
	}
	if first != nil {
		return wrapErr(parent, "clear", ns, first)
	}
	return nil
}

// writeBatch deletes reqs with BatchWriteItem, resending what DynamoDB
// leaves unprocessed after a growing, jittered delay.
func (b *Backend) writeBatch(ctx context.Context, reqs []types.WriteRequest) error {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, err := b.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{b.table: reqs},
		})
		if err != nil {
			return err
		}
		reqs = out.UnprocessedItems[b.table]
		if len(reqs) == 0 {
			return nil
		}
		if attempt == batchAttempts {
			return fmt.Errorf("%d deletes still unprocessed after %d attempts", len(reqs), attempt)
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// CreateTable creates table with the layout that [Backend] expects
// (partition key [AttrNamespace] S, sort key [AttrID] S, on-demand billing),
// waits until it is ACTIVE and turns on Time to Live on [AttrExpiry]. It is
// idempotent: an existing table (created or being created) is fine and is
// waited for, as is TTL already enabled on [AttrExpiry]. A server that
// does not implement the TTL API (UnknownOperationException, as from
// dynalite) is tolerated: Get ignores expired items anyway, they are just
// never deleted. TTL enabled on another attribute is an error, as are all
// other errors. CreateTable does not check the key schema of an existing
// table. ctx bounds the whole call, including the wait. client is usually
// a [*dynamodb.Client]; a DAX client does not serve these calls.
func CreateTable(ctx context.Context, client TableAPI, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &table,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrNamespace), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrID), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrNamespace), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrID), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return wrapErr(ctx, "create table", table, err)
	}
	if err := waitActive(ctx, client, table); err != nil {
		return wrapErr(ctx, "create table", table, err)
	}
	if err := enableTTL(ctx, client, table); err != nil {
		return wrapErr(ctx, "create table", table, err)
	}
	return nil
}

func waitActive(ctx context.Context, client TableAPI, table string) error {
	delay := 100 * time.Millisecond
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &table})
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			// Just created: DescribeTable may not see it yet.
		case err != nil:
			return err
		case out.Table.TableStatus == types.TableStatusActive:
			return nil
		case out.Table.TableStatus == types.TableStatusDeleting:
			return errors.New("table is being deleted")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the table to become ACTIVE: %w", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// enableTTL turns on Time to Live on AttrExpiry unless it is on already.
func enableTTL(ctx context.Context, client TableAPI, table string) error {
	// ttlOn reports whether TTL is (being) enabled on AttrExpiry, and fails
	// if it is on another attribute.
	ttlOn := func() (bool, error) {
		out, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: &table})
		if err != nil {
			return false, err
		}
		d := out.TimeToLiveDescription
		if d == nil {
			return false, nil
		}
		switch d.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(d.AttributeName); name != AttrExpiry {
				return false, fmt.Errorf("time to live is enabled on attribute %q, want %q", name, AttrExpiry)
			}
			return true, nil
		}
		return false, nil
	}
	on, err := ttlOn()
	if isUnsupported(err) {
		on, err = false, nil // try UpdateTimeToLive anyway
	}
	if err != nil || on {
		return err
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: &table,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(AttrExpiry),
			Enabled:       aws.Bool(true),
		},
	})
	switch {
	case err == nil, isUnsupported(err):
		return nil
	}
	// Another CreateTable may have enabled it meanwhile ("TimeToLive is
	// already enabled"): look again.
	if on, err2 := ttlOn(); err2 == nil && on {
		return nil
	}
	return fmt.Errorf("enabling time to live on %q: %w", AttrExpiry, err)
}

// isUnsupported reports whether err says that the server does not implement
// the operation (dynalite has no UpdateTimeToLive).
func isUnsupported(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "UnknownOperationException", "NotImplemented", "NotImplementedException":
		return true
	}
	return false
}

// wrapErr wraps an SDK error from operation op: it maps the item-size
// ValidationException to memo.ErrTooLarge and makes sure that the error
// wraps ctx.Err() when ctx has ended.
func wrapErr(ctx context.Context, op, key string, err error) error {
	if ce := ctx.Err(); ce != nil && !errors.Is(err, ce) {
		return fmt.Errorf("dynamobackend: %s %q: %w: %w", op, key, ce, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ValidationException" &&
		strings.Contains(ae.ErrorMessage(), "size has exceeded the maximum allowed size") {
		return fmt.Errorf("dynamobackend: %s %q: %w: %w", op, key, memo.ErrTooLarge, err)
	}
	return fmt.Errorf("dynamobackend: %s %q: %w", op, key, err)
}

// expiry returns the Unix second and millisecond at which an item written at
// now with ttl expires, both rounded up.
func expiry(now time.Time, ttl time.Duration) (sec, ms int64) {
	ns := now.Add(ttl).UnixNano()
	sec = ns / 1e9
	if ns%1e9 != 0 {
		sec++
	}
	ms = ns / 1e6
	if ns%1e6 != 0 {
		ms++
	}
	return sec, ms
}

// splitKey maps a memo key to its partition and sort key values.
func splitKey(key string) (ns, id string, err error) {
	if !validKeyPart(key) {
		return "", "", errors.New("key holds spaces, control or non-ASCII bytes")
	}
	ns, id, ok := memo.SplitKey(key)
	if !ok {
		return "", "", errors.New("key has no namespace (no ':')")
	}
	if ns == "" {
		ns = emptyPlaceholder
	}
	if id == "" {
		id = emptyPlaceholder
	}
	return ns, id, nil
}

// validKeyPart reports whether s is printable ASCII without spaces, like
// every key that memo builds.
func validKeyPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func itemKey(ns, id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrNamespace: &types.AttributeValueMemberS{Value: ns},
		AttrID:        &types.AttributeValueMemberS{Value: id},
	}
}
