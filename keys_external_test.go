package memo_test

import (
	"context"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

type stamped struct {
	*time.Time
	ID int
}

type badText struct{ N int }

func (badText) MarshalText() ([]byte, error) { panic("boom") }

// TestKeysThroughCall: the cases, through the public API. Each
// argument gets its own answer, and an argument that cannot be keyed is
// answered by fn and reported, never a panic.
func TestKeysThroughCall(t *testing.T) {
	ctx := context.Background()
	double := memo.New(func(_ context.Context, n *big.Int) (string, error) {
		return new(big.Int).Lsh(n, 1).String(), nil
	}, memo.Namespace("double"), memo.WithBackend(memory.New()))
	for _, tt := range []struct{ in, want string }{{"42", "84"}, {"1000", "2000"}, {"42", "84"}} {
		n, _ := new(big.Int).SetString(tt.in, 10)
		if got, err := double.Call(ctx, n); err != nil || got != tt.want {
			t.Errorf("double(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}

	var (
		mu     sync.Mutex
		faults []error
	)
	onError := memo.OnError(func(_ context.Context, err error) {
		mu.Lock()
		defer mu.Unlock()
		faults = append(faults, err)
	})
	id := memo.New(func(_ context.Context, s stamped) (int, error) { return s.ID, nil },
		memo.Namespace("stamped"), memo.WithBackend(memory.New()), onError)
	for _, want := range []int{1, 2} {
		if got, err := id.Call(ctx, stamped{nil, want}); err != nil || got != want {
			t.Errorf("Call(stamped{nil, %d}) = %d, %v; want %d", want, got, err, want)
		}
	}
	bad := memo.New(func(_ context.Context, b badText) (int, error) { return b.N, nil },
		memo.Namespace("bad"), memo.WithBackend(memory.New()), onError)
	if got, err := bad.Call(ctx, badText{7}); err != nil || got != 7 {
		t.Errorf("Call(badText{7}) = %d, %v; want 7 from fn", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	var be *memo.BackendError
	if len(faults) != 1 || !errors.As(faults[0], &be) || be.Op != "key" {
		t.Errorf("faults = %v, want one key error for badText", faults)
	}
}
