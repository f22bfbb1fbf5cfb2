package dynamobackend_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/gomemo/memo/backends/dynamobackend"
)

// TestInvalidOptions: New panics on nil or invalid input, with a message
// that names the package and the mistake; nothing is coerced.
func TestInvalidOptions(t *testing.T) {
	client := dynamodb.NewFromConfig(aws.Config{Region: "us-east-1"})
	tests := []struct {
		name string
		fn   func()
		want string
	}{
		{"nil client", func() { dynamobackend.New(nil, "memo") },
			"dynamobackend: New(nil, ...): a client is required (a *dynamodb.Client or another API)"},
		{"nil *dynamodb.Client", func() { dynamobackend.New((*dynamodb.Client)(nil), "memo") },
			"dynamobackend: New(nil, ...): a client is required (a *dynamodb.Client or another API)"},
		{"nil wrapper", func() { dynamobackend.New((*instrumented)(nil), "memo") },
			"dynamobackend: New(nil, ...): a client is required (a *dynamodb.Client or another API)"},
		{"empty table", func() { dynamobackend.New(client, "") },
			`dynamobackend: New: table name "": 0 characters, want 3 to 255`},
		{"short table", func() { dynamobackend.New(client, "ab") },
			`dynamobackend: New: table name "ab": 2 characters, want 3 to 255`},
		{"long table", func() { dynamobackend.New(client, strings.Repeat("t", 256)) },
			fmt.Sprintf("dynamobackend: New: table name %q: 256 characters, want 3 to 255", strings.Repeat("t", 256))},
		{"table with a space", func() { dynamobackend.New(client, "my table") },
			`dynamobackend: New: table name "my table": character ' ' at 2, want a-z, A-Z, 0-9, '_', '-' or '.'`},
		{"zero Option", func() { dynamobackend.New(client, "memo", dynamobackend.ConsistentRead(true), dynamobackend.Option{}) },
			"dynamobackend: New: option 1 is the zero Option; make options with ConsistentRead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := fmt.Sprint(recover()); got != tt.want {
					t.Errorf("panic = %q, want %q", got, tt.want)
				}
			}()
			tt.fn()
		})
	}
}

// TestValidOptions: the limits of table names are accepted, and so is an
// API that is not a *dynamodb.Client.
func TestValidOptions(t *testing.T) {
	client := dynamodb.NewFromConfig(aws.Config{Region: "us-east-1"})
	dynamobackend.New(client, "abc")
	dynamobackend.New(client, strings.Repeat("t", 255), dynamobackend.ConsistentRead(false))
	dynamobackend.New(client, "Memo_test-1.a")
	dynamobackend.New(emptyTable{}, "memo")
	dynamobackend.New(&instrumented{next: client}, "memo", dynamobackend.ConsistentRead(false))
}
