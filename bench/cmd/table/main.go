// Command table runs the peer benchmarks of github.com/gomemo/memo/bench
// (-count rounds of go test -count=1 -json, so that the libraries' runs
// interleave) and prints one markdown table of medians:
// library, scenario, ns/op, allocs/op, ratio to memo, ratio to the raw
// client (Redis rows), and whether the result is safe to mutate.
//
//	cd bench && go run ./cmd/table                 # run and print
//	go run ./cmd/table -count 5 -raw out.json      # also keep go test's output
//	go run ./cmd/table -in out.json                # print from a saved run
//
// Redis rows need MEMO_REDIS_ADDR (see scripts/servers.sh); without it they
// are skipped and left out of the table. Progress goes to stderr, the table
// to stdout. The exit status is 1 when go test failed (the table of what
// did run is printed all the same).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gomemo/memo/bench"
)

func main() {
	count := flag.Int("count", 5, "rounds: each runs every benchmark once (go test -count=1)")
	benchtime := flag.String("benchtime", "", "go test -benchtime (default go test's 1s)")
	pattern := flag.String("bench", ".", "go test -bench")
	dir := flag.String("dir", ".", "directory of the bench module")
	in := flag.String("in", "", "read a saved `go test -json` (or plain) output instead of running")
	raw := flag.String("raw", "", "also write go test's -json output to this file")
	flag.Parse()

	var (
		res    = results{samples: map[string][]sample{}}
		failed bool
	)
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			fatal(err)
		}
		res.merge(parse(f, nil))
		f.Close()
	} else {
		var rawOut io.Writer
		if *raw != "" {
			f, err := os.Create(*raw)
			if err != nil {
				fatal(err)
			}
			defer f.Close()
			rawOut = f
		}
		// -count rounds of one go test -count=1 each: every row runs once per
		// round, so rows interleave and a slow spell on this shared machine
		// touches every library alike rather than all runs of one.
		args := []string{"test", "-run", "^$", "-bench", *pattern, "-count", "1", "-timeout", "30m", "-json"}
		if *benchtime != "" {
			args = append(args, "-benchtime", *benchtime)
		}
		args = append(args, ".")
		for round := 1; round <= *count; round++ {
			fmt.Fprintf(os.Stderr, "table: round %d of %d: go %s (in %s)\n", round, *count, strings.Join(args, " "), *dir)
			cmd := exec.Command("go", args...)
			cmd.Dir = *dir
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				fatal(err)
			}
			if err := cmd.Start(); err != nil {
				fatal(err)
			}
			var src io.Reader = out
			if rawOut != nil {
				src = io.TeeReader(out, rawOut)
			}
			res.merge(parse(src, os.Stderr))
			if err := cmd.Wait(); err != nil {
				fmt.Fprintf(os.Stderr, "table: round %d: go test: %v\n", round, err)
				failed = true
			}
		}
	}
	if res.failed {
		failed = true
	}
	render(os.Stdout, res, *count)
	if failed {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "table:", err)
	os.Exit(2)
}

// sample is one benchmark result line.
type sample struct{ ns, bytes, allocs float64 }

type results struct {
	env     []string // goos, goarch, cpu lines
	samples map[string][]sample
	failed  bool
}

func (r *results) merge(o results) {
	for _, e := range o.env {
		if !slices.Contains(r.env, e) {
			r.env = append(r.env, e)
		}
	}
	for k, v := range o.samples {
		r.samples[k] = append(r.samples[k], v...)
	}
	r.failed = r.failed || o.failed
}

var (
	resultLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op(.*)$`)
	metric     = regexp.MustCompile(`([0-9.]+) (B/op|allocs/op)`)
)

// parse reads go test -json events (or plain go test output) and gathers
// the benchmark lines. Output events are joined back into lines first: go
// test -json may split one benchmark line over several events.
func parse(r io.Reader, progress io.Writer) results {
	res := results{samples: map[string][]sample{}}
	var text bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := func(l string) {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "goos:"), strings.HasPrefix(l, "goarch:"), strings.HasPrefix(l, "cpu:"):
			if !slices.Contains(res.env, l) {
				res.env = append(res.env, l)
			}
		case strings.HasPrefix(l, "--- FAIL"), strings.HasPrefix(l, "FAIL"), strings.HasPrefix(l, "panic:"):
			res.failed = true
		}
		if m := resultLine.FindStringSubmatch(l); m != nil {
			s := sample{}
			s.ns, _ = strconv.ParseFloat(m[2], 64)
			for _, mm := range metric.FindAllStringSubmatch(m[3], -1) {
				v, _ := strconv.ParseFloat(mm[1], 64)
				if mm[2] == "B/op" {
					s.bytes = v
				} else {
					s.allocs = v
				}
			}
			res.samples[m[1]] = append(res.samples[m[1]], s)
		}
		if progress != nil && strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "=== ") {
			fmt.Fprintln(progress, l)
		}
	}
	flush := func(final bool) {
		for {
			i := bytes.IndexByte(text.Bytes(), '\n')
			if i < 0 {
				break
			}
			line(string(text.Next(i + 1)[:i]))
		}
		if final && text.Len() > 0 {
			line(text.String())
			text.Reset()
		}
	}
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) > 0 && b[0] == '{' {
			var ev struct{ Action, Output string }
			if json.Unmarshal(b, &ev) == nil {
				if ev.Action == "output" {
					text.WriteString(ev.Output)
					flush(false)
				} else if ev.Action == "fail" {
					res.failed = true
				}
				continue
			}
		}
		text.Write(b)
		text.WriteByte('\n')
		flush(false)
	}
	flush(true)
	return res
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

type row struct {
	lib            bench.Lib
	ns, allocs, bs float64
	n              int
	runs           []float64 // ns/op of each round, in order
}

// ratio is the median of the per-round ratios r/ref when both have one
// sample per round (runs of one round are next to each other in time, so
// drift of this shared machine cancels), else the ratio of the medians.
func ratio(r, ref *row) float64 {
	if len(r.runs) != len(ref.runs) {
		return r.ns / ref.ns
	}
	q := make([]float64, len(r.runs))
	for i := range q {
		q[i] = r.runs[i] / ref.runs[i]
	}
	return median(q)
}

func medians(ss []sample) (ns, allocs, bs float64) {
	var a, b, c []float64
	for _, s := range ss {
		a = append(a, s.ns)
		b = append(b, s.allocs)
		c = append(c, s.bytes)
	}
	return median(a), median(b), median(c)
}

func render(w io.Writer, res results, count int) {
	payload, _ := json.Marshal(bench.NewUser(42))
	fmt.Fprintf(w, "Medians of %d interleaved rounds; %s, %s/%s, GOMAXPROCS=%d, %s", count, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	for _, e := range res.env {
		if strings.HasPrefix(e, "cpu:") {
			fmt.Fprintf(w, ", %s", strings.TrimSpace(strings.TrimPrefix(e, "cpu:")))
		}
	}
	fmt.Fprintf(w, ". User is %d bytes of encoding/json JSON. ns/op and allocs/op are medians over the rounds;"+
		" ratios are medians of the per-round ratios (rows of one round run minutes apart at most).\n\n", len(payload))
	fmt.Fprintln(w, "| library | scenario | ns/op | allocs/op | ratio to memo | ratio to raw GET | safe if caller mutates result |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---|")
	var notes []string
	seen := map[string]bool{}
	for _, sc := range bench.Scenarios {
		var rows []row
		var ref, raw *row
		for _, l := range bench.Libs {
			name := sc.Bench + "/" + l.ID
			ss := res.samples[name]
			if len(ss) == 0 {
				continue
			}
			seen[name] = true
			ns, allocs, bs := medians(ss)
			var runs []float64
			for _, x := range ss {
				runs = append(runs, x.ns)
			}
			rows = append(rows, row{lib: l.Lib, ns: ns, allocs: allocs, bs: bs, n: len(ss), runs: runs})
		}
		for i := range rows {
			if rows[i].lib.Ref && ref == nil {
				ref = &rows[i]
			}
			if rows[i].lib.Raw {
				raw = &rows[i]
			}
		}
		for _, r := range rows {
			toMemo, toRaw := "—", "—"
			if ref != nil {
				toMemo = fmt.Sprintf("%.2fx", ratio(&r, ref))
			}
			if raw != nil {
				toRaw = fmt.Sprintf("%.3fx", ratio(&r, raw))
			}
			n := ""
			if r.n != count {
				n = fmt.Sprintf(" (%d runs)", r.n)
			}
			safe := r.lib.Safety.String()
			if sc.PointerFree && r.lib.Safety != bench.NA {
				safe = "yes (a copy)"
			}
			fmt.Fprintf(w, "| %s | %s | %s%s | %s | %s | %s | %s |\n", r.lib.Name, sc.Label, fmtNs(r.ns), n,
				strconv.FormatFloat(r.allocs, 'f', -1, 64), toMemo, toRaw, safe)
		}
		if sc.Bench == "BenchmarkMiss" && ref != nil {
			for _, r := range rows {
				if r.lib.Name != ref.lib.Name {
					notes = append(notes, fmt.Sprintf("Miss overhead of memo beyond fn: %s ns (%s allocs) per call.",
						fmtNs(ref.ns-r.ns), strconv.FormatFloat(ref.allocs-r.allocs, 'f', -1, 64)))
				}
			}
		}
	}
	var unknown []string
	for name := range res.samples {
		if !seen[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		notes = append(notes, "Not in the table (no scenario or library entry in bench/libs.go): "+strings.Join(unknown, ", ")+".")
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}

// fmtNs prints nanoseconds: one decimal under 100, whole numbers with
// thousands separators above.
func fmtNs(ns float64) string {
	if ns < 100 {
		return strconv.FormatFloat(ns, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(ns+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
