package httpadapter

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCacheControl(t *testing.T) {
	none := directives{maxAge: -1, minFresh: -1}
	with := func(f func(*directives)) directives { d := none; f(&d); return d }
	cases := []struct {
		in   []string
		want directives
	}{
		{nil, none},
		{[]string{""}, none},
		{[]string{"no-store"}, with(func(d *directives) { d.noStore = true })},
		{[]string{"No-Store"}, with(func(d *directives) { d.noStore = true })},
		{[]string{"no-cache"}, with(func(d *directives) { d.noCache = true })},
		{[]string{` , no-cache ,, `}, with(func(d *directives) { d.noCache = true })},
		{[]string{"\tno-cache\t,max-age=0"}, with(func(d *directives) { d.noCache = true; d.maxAge = 0 })},
		{[]string{"max-age=10, max-age=3"}, with(func(d *directives) { d.maxAge = 3 })},
		{[]string{"max-age=3", "max-age=10"}, with(func(d *directives) { d.maxAge = 3 })},
		{[]string{`max-age="7"`}, with(func(d *directives) { d.maxAge = 7 })},
		{[]string{`max-age="\7"`}, with(func(d *directives) { d.maxAge = 7 })},
		{[]string{"max-age=99999999999999999999999"}, with(func(d *directives) { d.maxAge = maxDelta })},
		{[]string{"max-age=-1"}, none},
		{[]string{"max-age="}, none},
		{[]string{"max-age"}, none},
		{[]string{"max-age=1 2"}, none},
		{[]string{"max-age = 5"}, none},
		{[]string{"min-fresh=5, min-fresh=9"}, with(func(d *directives) { d.minFresh = 9 })},
		{[]string{`x="no-store, no-cache"`}, none},
		{[]string{`x="a\"b, no-store", no-cache`}, with(func(d *directives) { d.noCache = true })},
		{[]string{`x="unterminated, no-store`}, none},
		{[]string{`x="unterminated`, "no-store"}, with(func(d *directives) { d.noStore = true })},
		{[]string{"no-store junk, no-cache"}, with(func(d *directives) { d.noCache = true })},
		{[]string{"no-storex, xno-cache"}, none},
		{[]string{"no-store=\"x\""}, with(func(d *directives) { d.noStore = true })},
	}
	for _, c := range cases {
		if got := parseCacheControl(c.in); got != c.want {
			t.Errorf("parseCacheControl(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestRequestDirectivesPragma(t *testing.T) {
	cases := []struct {
		hdr  http.Header
		want bool // noCache
	}{
		{http.Header{"Pragma": {"no-cache"}}, true},
		{http.Header{"Pragma": {"x, No-Cache"}}, true},
		{http.Header{"Pragma": {"x=1"}}, false},
		{http.Header{"Pragma": {"no-cache"}, "Cache-Control": {"max-age=5"}}, false},
		{http.Header{"Pragma": {"no-cache"}, "Cache-Control": {""}}, false},
	}
	for _, c := range cases {
		fl := readFields(c.hdr)
		if got := directivesOf(fl.cacheControl, fl.pragma).noCache; got != c.want {
			t.Errorf("directivesOf(%v).noCache = %v, want %v", c.hdr, got, c.want)
		}
	}
}

const tag = `"abc"`

func TestMatchIfNoneMatch(t *testing.T) {
	cases := []struct {
		in   []string
		want bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{tag}, true},
		{[]string{"W/" + tag}, true},
		{[]string{"*"}, true},
		{[]string{" * "}, true},
		{[]string{"*x"}, false},
		{[]string{`"x", ` + tag}, true},
		{[]string{`"x",W/"y",` + tag + `,"z"`}, true},
		{[]string{`"x"`, tag}, true},
		{[]string{`"x", "y"`}, false},
		{[]string{`"ab"`, `"abcd"`, `abc`}, false},
		{[]string{`w/` + tag}, false},
		{[]string{`W/ ` + tag}, false},
		{[]string{`"a b", ` + tag}, false}, // malformed member stops the line
		{[]string{`"a b"`, tag}, true},     // but not the next line
		{[]string{`"x" junk, ` + tag}, false},
		{[]string{`"x`}, false},
		{[]string{`"a,b", ` + tag}, true}, // a comma inside a tag
		{[]string{tag + "x"}, false},
	}
	for _, c := range cases {
		if got := matchIfNoneMatch(c.in, tag); got != c.want {
			t.Errorf("matchIfNoneMatch(%q, %s) = %v, want %v", c.in, tag, got, c.want)
		}
	}
}

func TestIfModifiedSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in []string
		ok bool
	}{
		{nil, false},
		{[]string{"Wed, 25 Nov 2026 11:00:00 GMT"}, true},
		{[]string{"Wednesday, 25-Nov-26 11:00:00 GMT"}, true}, // RFC 850
		{[]string{"Wed Nov 25 11:00:00 2026"}, true},          // asctime
		{[]string{"Wed, 25 Nov 2026 13:00:00 GMT"}, false},    // future
		{[]string{"yesterday"}, false},
		{[]string{"Wed, 25 Nov 2026 11:00:00 GMT", "Wed, 25 Nov 2026 11:00:00 GMT"}, false},
	}
	for _, c := range cases {
		if _, ok := modifiedSince(c.in, now); ok != c.ok {
			t.Errorf("modifiedSince(%q) ok = %v, want %v", c.in, ok, c.ok)
		}
	}
}

// refIfNoneMatch is an independent reading of RFC 9110's If-None-Match
// grammar, by regular expression, for the fuzz target to compare against.
var refMember = regexp.MustCompile(`^[ \t,]*(?:(\*)|(W/)?("[\x21\x23-\x7e]*"))[ \t]*(?:,|$)`)

func highToBang(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 0x80 {
			b[i] = '!'
		}
	}
	return string(b)
}

func refIfNoneMatch(values []string, etag string) bool { return refMatch(values, etag, false) }

// refMatch is the reference for If-None-Match (strong false) and If-Match
// (strong true: a weak member never matches).
func refMatch(values []string, etag string, strong bool) bool {
	for _, v := range values {
		for {
			if strings.Trim(v, " \t,") == "" {
				break
			}
			// Go's regexp reads UTF-8, so obs-text bytes are matched as '!'
			// (another etagc) in a copy of the same length.
			m := refMember.FindStringSubmatchIndex(highToBang(v))
			if m == nil {
				break
			}
			if m[2] >= 0 {
				return true
			}
			if v[m[6]:m[7]] == etag && !(strong && m[4] >= 0) {
				return true
			}
			v = v[m[1]:]
		}
	}
	return false
}

func FuzzIfNoneMatch(f *testing.F) {
	for _, s := range []string{
		"", "*", tag, "W/" + tag, `"x", ` + tag, `"a b", ` + tag, `W/"x",W/"y"`, `"a,b"`,
		`*, "x"`, "\"\x80\xff\"", `"x" junk`, `,,,"abc",,`, "\t\"abc\"\t", `W/`, `"`,
	} {
		f.Add(s, "")
		f.Add(s, tag)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		vals := []string{a}
		if b != "" {
			vals = append(vals, b)
		}
		got := matchIfNoneMatch(vals, tag)
		if want := refIfNoneMatch(vals, tag); got != want {
			t.Fatalf("matchIfNoneMatch(%q) = %v, reference says %v", vals, got, want)
		}
		// If-Match: the same grammar, compared strongly.
		if got, want := matchETags(vals, tag, true), refMatch(vals, tag, true); got != want {
			t.Fatalf("matchETags(%q, strong) = %v, reference says %v", vals, got, want)
		}
		// A separate line holding the tag always matches.
		if !matchIfNoneMatch(append(vals, tag), tag) {
			t.Fatalf("matchIfNoneMatch(%q + the tag) = false, want true", vals)
		}
		// Every tag that parses in a well-formed line round-trips.
		if t1, weak, rest, ok := scanETag(a); ok {
			if !strings.HasPrefix(a, map[bool]string{true: "W/"}[weak]+t1) || !strings.HasSuffix(a, rest) {
				t.Fatalf("scanETag(%q) = %q, %v, %q: not a split of the input", a, t1, weak, rest)
			}
			if !matchIfNoneMatch([]string{a}, t1) && refMember.MatchString(highToBang(a)) {
				t.Fatalf("matchIfNoneMatch(%q, %q) = false, want true", a, t1)
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only: directive names are ASCII.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{
		"", "no-store", "no-cache", "max-age=0", `max-age="0"`, "NO-CACHE, MAX-AGE=5",
		`x="a,b", no-store`, `x="a\"b", no-cache`, `x="unterminated`, "min-fresh=99999999999999999999",
		" , ,no-cache", "max-age=1 2", "no-store=\"\\", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseCacheControl([]string{s})
		if d.maxAge < -1 || d.maxAge > maxDelta || d.minFresh < -1 || d.minFresh > maxDelta {
			t.Fatalf("parseCacheControl(%q) = %+v: value out of range", s, d)
		}
		// Names are case-insensitive; the values we read are digits.
		if u := parseCacheControl([]string{asciiUpper(s)}); u != d {
			t.Fatalf("parseCacheControl(%q) = %+v but upper-cased %+v", s, d, u)
		}
		// A second line adds directives and never removes one.
		for _, extra := range []string{"no-store", "no-cache", "max-age=0"} {
			e := parseCacheControl([]string{s, extra})
			if d.noStore && !e.noStore || d.noCache && !e.noCache || d.maxAge >= 0 && (e.maxAge < 0 || e.maxAge > d.maxAge) {
				t.Fatalf("parseCacheControl(%q, %q) = %+v lost something of %+v", s, extra, e, d)
			}
			switch extra {
			case "no-store":
				if !e.noStore {
					t.Fatalf("parseCacheControl(%q, no-store).noStore = false", s)
				}
			case "no-cache":
				if !e.noCache {
					t.Fatalf("parseCacheControl(%q, no-cache).noCache = false", s)
				}
			case "max-age=0":
				if e.maxAge != 0 {
					t.Fatalf("parseCacheControl(%q, max-age=0).maxAge = %v", s, e.maxAge)
				}
			}
		}
		// Splitting at a top-level comma into two lines changes nothing
		// when the comma is not inside a quoted string.
		if i := strings.IndexByte(s, ','); i >= 0 && !strings.Contains(s[:i], `"`) {
			if two := parseCacheControl([]string{s[:i], s[i+1:]}); two != d {
				t.Fatalf("parseCacheControl(%q) = %+v but split at the first comma %+v", s, d, two)
			}
		}
	})
}

func TestParsersDoNotAllocate(t *testing.T) {
	h := http.Header{"Cache-Control": {`no-cache, x="a,b", max-age=0`}, "If-None-Match": {`"x", W/"y", ` + tag}}
	if n := testing.AllocsPerRun(100, func() { fl := readFields(h); directivesOf(fl.cacheControl, fl.pragma) }); n != 0 {
		t.Errorf("readFields and directivesOf allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { matchIfNoneMatch(h["If-None-Match"], tag) }); n != 0 {
		t.Errorf("matchIfNoneMatch allocs = %v, want 0", n)
	}
}

func TestAppendHTTPDate(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 2, 28, 23, 59, 59, 999999999, time.FixedZone("x", 5*3600)),
		time.Date(2024, 12, 31, 1, 2, 3, 0, time.UTC),
		time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := range 1000 {
		times = append(times, time.Unix(int64(i)*7919*86400/3+int64(i)*3607, 0))
	}
	for _, tm := range times {
		want := tm.UTC().Format(http.TimeFormat)
		if got := string(appendHTTPDate([]byte("x"), tm)); got != "x"+want {
			t.Fatalf("appendHTTPDate(%v) = %q, want %q", tm, got, "x"+want)
		}
	}
}

// TestReadFields: the one pass over a small header and the lookups in a
// larger one read the same fields as looking each up.
func TestReadFields(t *testing.T) {
	names := []string{"Cache-Control", "Pragma", "If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since", "Authorization", "Cookie"}
	for fillers := 0; fillers <= 12; fillers += 3 {
		for mask := 0; mask < 1<<len(names); mask++ {
			h := http.Header{}
			for i := range fillers {
				h[fmt.Sprintf("X-Filler-%d", i)] = []string{"x"}
			}
			for i, n := range names {
				if mask&(1<<i) != 0 {
					h[n] = []string{n + "-value"}
				}
			}
			want := fields{
				cacheControl: h["Cache-Control"], pragma: h["Pragma"],
				ifMatch: h["If-Match"], ifUnmodifiedSince: h["If-Unmodified-Since"],
				ifNoneMatch: h["If-None-Match"], ifModifiedSince: h["If-Modified-Since"],
				credentials: len(h["Authorization"]) > 0 || len(h["Cookie"]) > 0,
			}
			if got := readFields(h); !cmp.Equal(got, want, cmp.AllowUnexported(fields{})) {
				t.Fatalf("readFields(%v) = %+v, want %+v", h, got, want)
			}
		}
	}
	empty := http.Header{"Authorization": {}, "Cookie": {}}
	if readFields(empty).credentials {
		t.Errorf("readFields(%v).credentials = true, want false (no value)", empty)
	}
}
