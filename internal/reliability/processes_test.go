package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/dynamobackend"
)

// TestReadYourWritesAcrossProcesses: a child process (this test binary,
// re-executed) calls a memoized function for 1,000 keys and prints each
// key once Call has returned; the parent, another process sharing the
// store, calls the same function for that key at once. Read-your-writes
// says the parent hits every time: fn runs 0 times in the parent. It fails
// if the write may follow the answer (write-behind), as it used to.
func TestReadYourWritesAcrossProcesses(t *testing.T) {
	const keys = 1000
	for _, tg := range []struct {
		name string
		open opener
	}{
		{"redis", openRedis},
		{"cluster", openCluster},
		{"memcached", openMemcached},
		{"dynamodb", nil},
	} {
		t.Run(tg.name, func(t *testing.T) {
			var target target
			table := ""
			if tg.name == "dynamodb" {
				c := newDynamo(env(t, "MEMO_DYNAMODB_ENDPOINT"))
				table = newTable(t, c)
				target.b = dynamobackend.New(c, table)
			} else {
				target = tg.open(t)
			}
			ns := namespace("ryw-proc")
			var runs atomic.Int64
			f := memo.New(func(ctx context.Context, i int) (int, error) {
				runs.Add(1)
				return -1, nil
			}, memo.Namespace(ns), memo.WithBackend(target.b), memo.Timeout(2*time.Second))

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReadYourWritesChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "MEMO_RYW_CHILD="+strings.Join([]string{tg.name, ns, table, strconv.Itoa(keys)}, ","))
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			seen, wrong := 0, 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "stored ") {
					continue
				}
				i, _ := strconv.Atoi(strings.TrimPrefix(line, "stored "))
				got, err := f.Call(context.Background(), i)
				if err != nil || got != i*7 {
					wrong++
				}
				seen++
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
			if seen != keys {
				t.Fatalf("the child reported %d keys, want %d", seen, keys)
			}
			if n := runs.Load(); n != 0 || wrong != 0 {
				t.Errorf("in the second process fn ran %d times and %d answers were not the first process's, for %d keys; want 0 and 0", n, wrong, keys)
			}
		})
	}
}

// TestReadYourWritesChild is the first process of
// TestReadYourWritesAcrossProcesses; it does nothing unless started by it.
func TestReadYourWritesChild(t *testing.T) {
	spec := os.Getenv("MEMO_RYW_CHILD")
	if spec == "" {
		t.Skip("run by TestReadYourWritesAcrossProcesses")
	}
	parts := strings.Split(spec, ",")
	name, ns, table := parts[0], parts[1], parts[2]
	keys, _ := strconv.Atoi(parts[3])
	var b memo.Backend
	switch name {
	case "redis":
		b = openRedis(t).b
	case "cluster":
		b = openCluster(t).b
	case "memcached":
		b = openMemcached(t).b
	case "dynamodb":
		b = dynamobackend.New(newDynamo(env(t, "MEMO_DYNAMODB_ENDPOINT")), table)
	}
	f := memo.New(func(ctx context.Context, i int) (int, error) { return i * 7, nil },
		memo.Namespace(ns), memo.WithBackend(b), memo.Timeout(2*time.Second))
	w := bufio.NewWriter(os.Stdout)
	for i := range keys {
		if got, err := f.Call(context.Background(), i); got != i*7 || err != nil {
			t.Fatalf("Call(%d) = %d, %v", i, got, err)
		}
		fmt.Fprintf(w, "stored %d\n", i)
		w.Flush()
	}
}
