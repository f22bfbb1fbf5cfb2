package dynamobackend_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
	"github.com/gomemo/memo/internal/benchutil"
)

// BenchmarkMemoHit measures a memo hit through DynamoDB beside the raw
// client's GetItem of the same item (same key, consistent read, as the
// backend asks); see benchutil.BenchMemoHit.
func BenchmarkMemoHit(b *testing.B) {
	client := newClient(b)
	table := newTable(b, client)
	benchutil.BenchMemoHit(b, dynamobackend.New(client, table), func(_ *testing.B, key string) func(context.Context) ([]byte, error) {
		part, id, _ := memo.SplitKey(key)
		in := &dynamodb.GetItemInput{
			TableName: &table,
			Key: map[string]types.AttributeValue{
				dynamobackend.AttrNamespace: &types.AttributeValueMemberS{Value: part},
				dynamobackend.AttrID:        &types.AttributeValueMemberS{Value: id},
			},
			ConsistentRead: aws.Bool(true),
		}
		return func(ctx context.Context) ([]byte, error) {
			out, err := client.GetItem(ctx, in)
			if err != nil {
				return nil, err
			}
			v, _ := out.Item[dynamobackend.AttrValue].(*types.AttributeValueMemberB)
			if v == nil {
				return nil, fmt.Errorf("raw GetItem = %v", out.Item)
			}
			return v.Value, nil
		}
	})
}
