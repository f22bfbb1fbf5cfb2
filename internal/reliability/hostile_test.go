package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomemo/memo"
	"github.com/gomemo/memo/backends/memory"
)

// hostilePayload is a well-formed envelope around a payload that attacks
// the codec: it declares more than it holds, or nests without end.
type hostilePayload struct {
	name    string
	codec   memo.Codec
	payload []byte
	child   bool // may crash the process: run it in a child process
}

func msgpackField(name string, rest ...byte) []byte {
	b := []byte{0x81, 0xa0 | byte(len(name))}
	return append(append(b, name...), rest...)
}

// hostilePayloads attack Doc's fields. Where the decoder allocates what the
// entry declares, the declaration is scaled down so that the test survives
// the defect it shows: a bin declaring 4 GiB allocates 4 GiB, and a
// map[string]any declaring 2^32-1 entries asks for a map of that size, an
// out-of-memory crash (both seen with msgpack v5.4.1).
func hostilePayloads() []hostilePayload {
	// Both nestings are left unclosed, so the entry is malformed: a miss,
	// once the decoder has gone through it.
	deepJSON := `{"Extra":{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	deepMsgpack := append(msgpackField("Extra", 0x81, 0xa1, 'a'), bytes.Repeat([]byte{0x91}, 8<<20)...)
	return []hostilePayload{
		{name: "msgpack map declaring 4G fields", codec: memo.Msgpack, payload: []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{name: "msgpack string declaring 4 GiB", codec: memo.Msgpack, payload: msgpackField("Name", 0xdb, 0xff, 0xff, 0xff, 0xff)},
		{name: "msgpack array declaring 4G elements", codec: memo.Msgpack, payload: msgpackField("Tags", 0xdd, 0xff, 0xff, 0xff, 0xff)},
		{name: "msgpack map[string]int declaring 4G entries", codec: memo.Msgpack, payload: msgpackField("Attrs", 0xdf, 0xff, 0xff, 0xff, 0xff)},
		{name: "msgpack bytes declaring 64 MiB (stands for 4 GiB)", codec: memo.Msgpack, payload: msgpackField("Blob", 0xc6, 0x04, 0, 0, 0)},
		{name: "msgpack map[string]any declaring 2M entries (stands for 4G)", codec: memo.Msgpack, payload: msgpackField("Extra", 0xdf, 0, 0x20, 0, 0)},
		{name: "json arrays nested 10000 deep in an any (20 KB)", codec: memo.JSON, payload: []byte(deepJSON)},
		{name: "msgpack arrays nested 8M deep in an any (8 MiB)", codec: memo.Msgpack, payload: deepMsgpack, child: true},
	}
}

// TestHostilePayloads stores well-formed envelopes (right magic, version,
// codec and fingerprint) around hostile payloads and calls the function:
// each must be a miss that is overwritten, without a large allocation, a
// long decode or a crash. The bytes a backend returns are the bytes written
// (TestCorruptEntries shows it for every server), so the in-memory backend
// stands for all of them. A case that may crash the process runs in a
// child process.
func TestHostilePayloads(t *testing.T) {
	for i, hp := range hostilePayloads() {
		t.Run(hp.name, func(t *testing.T) {
			if hp.child {
				runHostileChild(t, i)
				return
			}
			r := hostileRead(t, hp)
			figures(t, "payload_bytes", len(hp.payload), "alloc", mib(r.alloc), "stack_growth", mib(r.stack),
				"time", r.took, "miss", r.miss, "overwritten", r.overwritten)
			if r.alloc > maxHostileAlloc {
				t.Errorf("reading a %d-byte payload allocated %s, over %s", len(hp.payload), mib(r.alloc), mib(maxHostileAlloc))
			}
			if r.took > maxHostileTime {
				t.Errorf("reading a %d-byte payload took %v, over %v", len(hp.payload), r.took, maxHostileTime)
			}
		})
	}
}

type hostileResult struct {
	alloc, stack      uint64
	took              time.Duration
	miss, overwritten bool
}

// hostileRead writes hp's envelope under a key of a fresh function and
// calls it.
func hostileRead(t *testing.T, hp hostilePayload) hostileResult {
	ctx := context.Background()
	b := memory.New(memory.Shards(1)) // one shard takes entries up to MaxBytes
	var runs int
	f := memo.New(func(_ context.Context, a int) (Doc, error) { runs++; return doc(a), nil },
		memo.Namespace(namespace("hostile")), memo.WithBackend(b), memo.WithCodec(hp.codec),
		memo.OnError(func(context.Context, error) {}))
	const a = 3
	f.Call(ctx, a)
	good, _, _ := b.Get(ctx, f.Key(a))
	_, fp, _ := split(good)
	env := buildEnvelope(1, hp.codec.Name(), fp, time.Now().Add(time.Hour).UnixNano(), hp.payload)
	if err := b.Set(ctx, f.Key(a), env, 0); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	v, err := callNoPanic(t, f, a)
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	if err != nil || !sameDoc(v, doc(a)) {
		t.Errorf("Call = %+v, %v; want fn's answer", v, err)
	}
	r := hostileResult{alloc: m1.TotalAlloc - m0.TotalAlloc, took: took, miss: runs == 2}
	if m1.StackInuse > m0.StackInuse {
		r.stack = m1.StackInuse - m0.StackInuse
	}
	if !r.miss {
		t.Errorf("fn ran %d times; the hostile entry must be a miss", runs-1)
	}
	f.Call(ctx, a)
	r.overwritten = runs == 2
	if !r.overwritten {
		t.Errorf("the hostile entry was not overwritten")
	}
	return r
}

// runHostileChild runs case i in a child process (this test binary, run
// for TestHostileChild only) and fails if the child crashes or hangs.
func runHostileChild(t *testing.T, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHostileChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "MEMO_RELIABILITY_CHILD="+strconv.Itoa(i))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	crash := ""
	if i := bytes.Index(out, []byte("fatal error:")); i >= 0 {
		crash = strings.TrimSpace(string(out[i : i+bytes.IndexByte(out[i:], '\n')]))
	}
	figures(t, "payload_bytes", len(hostilePayloads()[i].payload), "child_exit", exitCode(err), "child_time", took,
		"crash", strconv.Quote(crash))
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "FIGURES") {
			t.Log("child: " + strings.TrimSpace(line))
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the child process hung reading the entry (killed after %v)", took)
	}
	if err != nil {
		tail := string(out)
		if len(tail) > 1500 {
			tail = tail[:1500] + "..."
		}
		t.Fatalf("reading the entry crashed the process (%v): %s\n%s", err, crash, tail)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestHostileChild is the child process of runHostileChild; it does nothing
// in a normal run.
func TestHostileChild(t *testing.T) {
	s := os.Getenv("MEMO_RELIABILITY_CHILD")
	if s == "" {
		t.Skip("the child process of TestHostilePayloads")
	}
	i, _ := strconv.Atoi(s)
	hp := hostilePayloads()[i]
	r := hostileRead(t, hp)
	figures(t, "case", strconv.Quote(hp.name), "alloc", mib(r.alloc), "stack_growth", mib(r.stack), "time", r.took)
	if r.took > maxHostileTime {
		t.Errorf("reading a %d-byte payload took %v, over %v", len(hp.payload), r.took, maxHostileTime)
	}
	if r.alloc > maxHostileAlloc+uint64(2*len(hp.payload)) {
		t.Errorf("reading a %d-byte payload allocated %s", len(hp.payload), mib(r.alloc))
	}
	fmt.Println("child done")
}
