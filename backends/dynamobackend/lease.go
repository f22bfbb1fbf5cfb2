package dynamobackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gomemo/memo"
)

// Attribute names of a key's lease (see [Backend.Acquire]), on the key's
// own item.
const (
	AttrLease       = "lease"   // the token of the lease's holder (S)
	AttrLeaseMillis = "leasems" // when the lease ends, in Unix milliseconds (N)
)

var _ memo.Leaser = (*Backend)(nil)

// Expression attribute names of the lease calls: every attribute goes
// through a placeholder ("value" is a reserved word).
var leaseNames = map[string]string{
	"#ns":    AttrNamespace,
	"#lease": AttrLease,
	"#lms":   AttrLeaseMillis,
	"#expms": AttrExpiryMillis,
	"#exp":   AttrExpiry,
	"#value": AttrValue,
}

// names returns the entries of leaseNames for the placeholders given.
func names(ph ...string) map[string]string {
	m := make(map[string]string, len(ph))
	for _, p := range ph {
		m[p] = leaseNames[p]
	}
	return m
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func str(s string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: s} }

// Acquire takes the lease on key for ttl, with conditional writes on the
// key's own item: the lease is its [AttrLease] (the holder's random token)
// and [AttrLeaseMillis] (when it ends, by the acquirer's clock, rounded up
// to the millisecond). ok is false when another token holds a lease that
// has not ended.
//
// A conditional write is always checked against the item's latest state,
// whatever [ConsistentRead] says, and through DAX too (DAX passes writes
// through to DynamoDB). Acquire makes one UpdateItem when the key holds no
// live value (no item; an expired one that DynamoDB has not deleted yet;
// one left by an earlier lease), two when it does (a refresh) or when the
// lease is held (a waiter's retry):
//
//   - The first is conditioned on the item holding no live value and no
//     lease that has not ended. It makes the item lease-only: the lease, an
//     [AttrExpiryMillis] of 0 (so that [Backend.Get], as any reader that
//     checks [AttrExpiryMillis], reads it as a miss), an [AttrExpiry] at
//     the lease's end (so that DynamoDB's Time to Live deletes it once the
//     lease has ended, if no value replaced it), and no [AttrValue] (the
//     expired value's bytes are dropped).
//   - The second, made only if the first failed, is conditioned on the item
//     holding a live value and no lease that has not ended, and adds the
//     lease to it, leaving its value and expiry as they are: a reader
//     still hits meanwhile.
//
// A lease ends by [Backend.SetFenced] (whose PutItem replaces the item), by
// [Backend.Release] and [Backend.Void] (an UpdateItem that removes the two
// attributes), by Delete and Clear (which delete the item), by its ttl, and
// also by a plain [Backend.Set] of the key, whose PutItem replaces the
// whole item: a write that does not go through the lease (memo computing
// anyway after LeaseWait, or a function without [memo.Lease]) thus voids
// it, and the holder's answer is not stored (the other one is). Lease ends
// are compared with the local clock of each process: clocks that disagree
// by d may let a process take a lease up to d early (fn then runs twice;
// the first holder's write is refused, never stored over the second's).
//
// DynamoDB's Time to Live may delete an item whose own [AttrExpiry] passes
// while a refresh holds a lease on it (it deletes lazily, usually much
// later): the lease then ends with it and the refresh's answer is not
// stored, as after a Forget.
//
// Errors: ctx ended (wrapping ctx.Err()), a ttl that is not positive, an
// invalid key, any SDK error.
func (b *Backend) Acquire(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	if ttl <= 0 {
		return "", false, fmt.Errorf("dynamobackend: lease %q: ttl %v must be positive", key, ttl)
	}
	ns, id, err := splitKey(key)
	if err != nil {
		return "", false, fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	now := time.Now()
	endSec, endMs := expiry(now, ttl)
	token := newToken()
	values := map[string]types.AttributeValue{
		":now": num(now.UnixMilli()),
		":tok": str(token),
		":lms": num(endMs),
	}
	// No live value: make the item lease-only.
	hollow := map[string]types.AttributeValue{":exp": num(endSec), ":zero": num(0)}
	for k, v := range values {
		hollow[k] = v
	}
	_, err = b.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &b.table,
		Key:                       itemKey(ns, id),
		ConditionExpression:       aws.String("(attribute_not_exists(#ns) OR #expms <= :now) AND (attribute_not_exists(#lms) OR #lms <= :now)"),
		UpdateExpression:          aws.String("SET #lease = :tok, #lms = :lms, #exp = :exp, #expms = :zero REMOVE #value"),
		ExpressionAttributeNames:  names("#ns", "#expms", "#lease", "#lms", "#exp", "#value"),
		ExpressionAttributeValues: hollow,
	})
	if err == nil {
		return token, true, nil
	}
	if !conditionFailed(err) {
		return "", false, wrapErr(ctx, "lease", key, err)
	}
	// A live value, or a lease held: add the lease to the value.
	_, err = b.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &b.table,
		Key:                       itemKey(ns, id),
		ConditionExpression:       aws.String("attribute_exists(#ns) AND (attribute_not_exists(#expms) OR #expms > :now) AND (attribute_not_exists(#lms) OR #lms <= :now)"),
		UpdateExpression:          aws.String("SET #lease = :tok, #lms = :lms"),
		ExpressionAttributeNames:  names("#ns", "#expms", "#lease", "#lms"),
		ExpressionAttributeValues: values,
	})
	if err == nil {
		return token, true, nil
	}
	if conditionFailed(err) {
		return "", false, nil
	}
	return "", false, wrapErr(ctx, "lease", key, err)
}

// AcquireIfAbsent is [Backend.Acquire] for a caller whose read found no
// entry: it takes the lease only while key holds no live value, in one
// conditional UpdateItem (Acquire's first), so that a process whose read
// missed just before another stored the answer does not take the lease and
// run fn again. exists reports that a live value is there (read it); ok
// false with exists false means another token holds the lease. The item's
// state is taken from the failed condition's ReturnValuesOnConditionCheckFailure;
// a server that does not return it (older DynamoDB-compatible servers) costs
// one strongly consistent GetItem more, only when the condition fails.
func (b *Backend) AcquireIfAbsent(ctx context.Context, key string, ttl time.Duration) (token string, ok, exists bool, err error) {
	if err := ctx.Err(); err != nil {
		return "", false, false, fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	if ttl <= 0 {
		return "", false, false, fmt.Errorf("dynamobackend: lease %q: ttl %v must be positive", key, ttl)
	}
	ns, id, err := splitKey(key)
	if err != nil {
		return "", false, false, fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	now := time.Now()
	endSec, endMs := expiry(now, ttl)
	token = newToken()
	_, err = b.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           &b.table,
		Key:                                 itemKey(ns, id),
		ConditionExpression:                 aws.String("(attribute_not_exists(#ns) OR #expms <= :now) AND (attribute_not_exists(#lms) OR #lms <= :now)"),
		UpdateExpression:                    aws.String("SET #lease = :tok, #lms = :lms, #exp = :exp, #expms = :zero REMOVE #value"),
		ExpressionAttributeNames:            names("#ns", "#expms", "#lease", "#lms", "#exp", "#value"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": num(now.UnixMilli()), ":tok": str(token), ":lms": num(endMs),
			":exp": num(endSec), ":zero": num(0),
		},
	})
	if err == nil {
		return token, true, false, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return "", false, false, wrapErr(ctx, "lease", key, err)
	}
	item := ccf.Item
	if item == nil {
		out, gerr := b.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:                &b.table,
			Key:                      itemKey(ns, id),
			ConsistentRead:           aws.Bool(true),
			ProjectionExpression:     aws.String("#ns, #expms"),
			ExpressionAttributeNames: names("#ns", "#expms"),
		})
		if gerr != nil {
			return "", false, false, wrapErr(ctx, "lease", key, gerr)
		}
		item = out.Item
	}
	return "", false, liveValue(item, now.UnixMilli()), nil
}

// liveValue reports whether item holds a value that has not expired at
// now (Unix milliseconds): a lease-only item (expiry 0) holds none.
func liveValue(item map[string]types.AttributeValue, now int64) bool {
	if item == nil || item[AttrNamespace] == nil {
		return false
	}
	e, ok := item[AttrExpiryMillis].(*types.AttributeValueMemberN)
	if !ok {
		return true // no expiry
	}
	ms, err := strconv.ParseInt(e.Value, 10, 64)
	return err == nil && ms > now
}

// SetFenced stores value under key for ttl (0: no expiry) only while token
// holds key's lease, and ends the lease, with one PutItem conditioned on
// the item's [AttrLease] being token and its [AttrLeaseMillis] not passed
// (by the local clock): the item is replaced whole, as by [Backend.Set],
// so the lease goes with the write. The check and the write are one
// atomic step: a Delete, a Clear that deletes the item, a Void or a Set of
// key in any process before it makes it store nothing (stored false, nil
// error). An item over 400 KB is refused as by Set, and the lease is then
// released. Errors: ctx ended (wrapping ctx.Err()), a negative ttl, an
// invalid key, any SDK error. SetFenced does not retain value.
func (b *Backend) SetFenced(ctx context.Context, key string, value []byte, ttl time.Duration, token string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("dynamobackend: set %q: %w", key, err)
	}
	if ttl < 0 {
		return false, fmt.Errorf("dynamobackend: set %q: negative ttl %v", key, ttl)
	}
	item, err := b.item(key, value, ttl)
	if err != nil {
		if errors.Is(err, memo.ErrTooLarge) {
			// Nothing can be stored: let the others compute now rather
			// than wait for the ttl.
			_ = b.Release(ctx, key, token)
		}
		return false, err
	}
	_, err = b.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                &b.table,
		Item:                     item,
		ConditionExpression:      aws.String("#lease = :tok AND #lms > :now"),
		ExpressionAttributeNames: names("#lease", "#lms"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":tok": str(token),
			":now": num(time.Now().UnixMilli()),
		},
	})
	if err == nil {
		return true, nil
	}
	if conditionFailed(err) {
		return false, nil
	}
	return false, wrapErr(ctx, "set", key, err)
}

// Release ends key's lease if token still holds it, with one UpdateItem
// that removes [AttrLease] and [AttrLeaseMillis] on that condition. A
// lease-only item stays, a miss, until DynamoDB's Time to Live deletes it
// (its [AttrExpiry] is the lease's end) or a write replaces it. Errors:
// ctx ended (wrapping ctx.Err()), an invalid key, any SDK error.
func (b *Backend) Release(ctx context.Context, key, token string) error {
	return b.endLease(ctx, key, "#lease = :tok", map[string]types.AttributeValue{":tok": str(token)})
}

// Void ends any lease on key, so that its holder's SetFenced stores
// nothing, with one UpdateItem that removes [AttrLease] and
// [AttrLeaseMillis] when the item has a lease (it creates no item).
// Errors: ctx ended (wrapping ctx.Err()), an invalid key, any SDK error.
func (b *Backend) Void(ctx context.Context, key string) error {
	return b.endLease(ctx, key, "attribute_exists(#lease)", nil)
}

// endLease removes key's lease attributes on condition cond; a failed
// condition is no error.
func (b *Backend) endLease(ctx context.Context, key, cond string, values map[string]types.AttributeValue) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	ns, id, err := splitKey(key)
	if err != nil {
		return fmt.Errorf("dynamobackend: lease %q: %w", key, err)
	}
	_, err = b.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &b.table,
		Key:                       itemKey(ns, id),
		ConditionExpression:       aws.String(cond),
		UpdateExpression:          aws.String("REMOVE #lease, #lms"),
		ExpressionAttributeNames:  names("#lease", "#lms"),
		ExpressionAttributeValues: values,
	})
	if err != nil && !conditionFailed(err) {
		return wrapErr(ctx, "lease", key, err)
	}
	return nil
}

// conditionFailed reports whether err is DynamoDB's refusal of a
// conditional write whose condition does not hold.
func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// newToken returns a random lease token.
func newToken() string {
	var t [16]byte
	rand.Read(t[:])
	return hex.EncodeToString(t[:])
}
