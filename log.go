package memo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// LogInterval is how often the default [OnError] logs one kind of fault:
// the first fault of a kind (its operation and the class of its error, such
// as a get that timed out) is logged at once, then at most one line per
// LogInterval, which counts the faults of that kind it stood for.
const LogInterval = 10 * time.Second

// logInterval is LogInterval; tests shorten it.
var logInterval = LogInterval

// logs throttles the default log lines by kind.
var logs = struct {
	sync.Mutex
	kinds map[string]*logKind
}{kinds: make(map[string]*logKind)}

type logKind struct {
	last       time.Time // when a line of this kind was last written
	suppressed int       // faults of the kind since, not written
}

// maxLogKinds bounds the kinds remembered; beyond it they start afresh.
const maxLogKinds = 1024

// logError is the default OnError: a WARN line per kind of fault, at most
// once per LogInterval.
func logError(ctx context.Context, err error) {
	logOnce(ctx, faultKind(err), err)
}

// logOnce logs err at WARN unless a line of its kind was written less than
// LogInterval ago; then it only counts it, for the next line to say.
func logOnce(ctx context.Context, kind string, err error) {
	now := time.Now()
	logs.Lock()
	k := logs.kinds[kind]
	if k == nil {
		if len(logs.kinds) >= maxLogKinds {
			clear(logs.kinds)
		}
		k = &logKind{}
		logs.kinds[kind] = k
	} else if now.Sub(k.last) < logInterval {
		k.suppressed++
		logs.Unlock()
		return
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	logs.Unlock()
	attrs := []slog.Attr{slog.Any("err", err)}
	if n > 0 {
		attrs = append(attrs, slog.Int("suppressed", n), slog.Duration("interval", logInterval))
	}
	slog.Default().LogAttrs(ctx, slog.LevelWarn, "memo: cache fault (answer served from fn)", attrs...)
}

// faultKind names the kind of a fault: its operation and the class of its
// error. It never holds a key.
func faultKind(err error) string {
	op := ""
	var be *BackendError
	if errors.As(err, &be) {
		op, err = be.Op, be.Err
	}
	var pe *PanicError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return op + ":timeout"
	case errors.Is(err, context.Canceled):
		return op + ":canceled"
	case errors.As(err, &pe):
		return op + ":panic"
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return fmt.Sprintf("%s:%T", op, err)
}
