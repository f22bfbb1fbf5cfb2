package redisbackend

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// lateCtx is a context whose deadline is d but whose Err is still nil, as a
// context is between its deadline and its timer firing.
type lateCtx struct {
	context.Context
	d  time.Time
	ok bool
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.d, c.ok }

type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// wrap adds context.DeadlineExceeded to a failure at or just before ctx's
// deadline that ctx has not reported yet, and to nothing else.
func TestWrapDeadline(t *testing.T) {
	now := time.Now()
	timeout := os.ErrDeadlineExceeded // what a socket deadline gives: a net.Error with Timeout()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"socket timeout, deadline passed", lateCtx{context.Background(), now.Add(-time.Millisecond), true}, timeout, true},
		{"socket timeout, deadline within the slack", lateCtx{context.Background(), now.Add(deadlineSlack / 2), true}, timeout, true},
		{"socket timeout, deadline far", lateCtx{context.Background(), now.Add(time.Second), true}, timeout, false},
		{"socket timeout, no deadline", context.Background(), timeout, false},
		{"broken connection, deadline passed", lateCtx{context.Background(), now.Add(-time.Millisecond), true}, io.ErrUnexpectedEOF, true},
		{"broken connection, deadline within the slack", lateCtx{context.Background(), now.Add(deadlineSlack / 2), true}, io.ErrUnexpectedEOF, false},
		{"a reply, deadline passed", lateCtx{context.Background(), now.Add(-time.Millisecond), true}, replyErr("WRONGTYPE"), false},
	}
	for _, tt := range tests {
		err := wrap(tt.ctx, "get", tt.err)
		if got := errors.Is(err, context.DeadlineExceeded); got != tt.want {
			t.Errorf("%s: wrap = %v; errors.Is(DeadlineExceeded) = %v, want %v", tt.name, err, got, tt.want)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: wrap = %v, want it to wrap %v", tt.name, err, tt.err)
		}
	}
}
