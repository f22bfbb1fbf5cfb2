package httpadapter

import (
	"net/http"
	"strings"
	"time"
)

// This file parses the request headers the handler honours. Every parser is
// total: any input, however malformed, yields a result and never panics
// (FuzzCacheControl, FuzzIfNoneMatch). None of them allocates on
// well-formed input.

// maxDelta is the largest delta-seconds value kept; RFC 9111 §1.2.2 lets a
// cache read a larger one as 2^31.
const maxDelta = 1 << 31

// directives are the request Cache-Control directives the handler honours.
type directives struct {
	noStore  bool
	noCache  bool
	maxAge   int64 // -1 when absent
	minFresh int64 // -1 when absent
}

// noDirectives is a request without Cache-Control or Pragma.
var noDirectives = directives{maxAge: -1, minFresh: -1}

// directivesOf reads the request's Cache-Control (all its lines), and its
// Pragma when it has no Cache-Control at all (RFC 9111 §5.4).
func directivesOf(cc, pragma []string) directives {
	if len(cc) > 0 {
		return parseCacheControl(cc)
	}
	d := directives{maxAge: -1, minFresh: -1}
	if len(pragma) > 0 {
		d.noCache = parseCacheControl(pragma).noCache // Pragma: no-cache, same list syntax
	}
	return d
}

// fields are the request header fields the handler reads, each nil when
// the request has none.
type fields struct {
	cacheControl, pragma         []string
	ifMatch, ifUnmodifiedSince   []string
	ifNoneMatch, ifModifiedSince []string
	credentials                  bool // Authorization or Cookie, even empty
}

// readFields reads the fields a handler needs from h: in one pass over a
// small header (as an API client's or a load generator's), by a lookup of
// each name in a larger one.
func readFields(h http.Header) (f fields) {
	if len(h) > 8 {
		return fields{
			cacheControl: h["Cache-Control"], pragma: h["Pragma"],
			ifMatch: h["If-Match"], ifUnmodifiedSince: h["If-Unmodified-Since"],
			ifNoneMatch: h["If-None-Match"], ifModifiedSince: h["If-Modified-Since"],
			credentials: hasCredentials(h),
		}
	}
	for k, v := range h {
		switch k {
		case "Cache-Control":
			f.cacheControl = v
		case "Pragma":
			f.pragma = v
		case "If-Match":
			f.ifMatch = v
		case "If-Unmodified-Since":
			f.ifUnmodifiedSince = v
		case "If-None-Match":
			f.ifNoneMatch = v
		case "If-Modified-Since":
			f.ifModifiedSince = v
		case "Authorization", "Cookie":
			f.credentials = f.credentials || len(v) > 0
		}
	}
	return f
}

// parseCacheControl parses Cache-Control field values: comma-separated
// directives, names case-insensitive, arguments a token or a quoted-string
// (whose commas do not split the list). Malformed members are ignored.
// Repeated directives keep the more demanding value: the smallest max-age,
// the largest min-fresh.
func parseCacheControl(values []string) directives {
	d := directives{maxAge: -1, minFresh: -1}
	for _, v := range values {
		for v != "" {
			var name, arg string
			var ok bool
			name, arg, ok, v = nextDirective(v)
			if !ok {
				continue
			}
			switch {
			case strings.EqualFold(name, "no-store"):
				d.noStore = true
			case strings.EqualFold(name, "no-cache"):
				d.noCache = true
			case strings.EqualFold(name, "max-age"):
				if n, ok := deltaSeconds(arg); ok && (d.maxAge < 0 || n < d.maxAge) {
					d.maxAge = n
				}
			case strings.EqualFold(name, "min-fresh"):
				if n, ok := deltaSeconds(arg); ok && n > d.minFresh {
					d.minFresh = n
				}
			}
		}
	}
	return d
}

// nextDirective reads one list member from s: OWS name [ "=" ( token /
// quoted-string ) ] OWS, up to and including the comma that ends it. ok is
// false for an empty or malformed member, which the caller skips; rest is
// what follows the member's comma.
func nextDirective(s string) (name, arg string, ok bool, rest string) {
	s = trimOWS(s)
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	name, s = s[:i], s[i:]
	ok = name != ""
	if s != "" && s[0] == '=' {
		s = s[1:]
		if s != "" && s[0] == '"' {
			var qok bool
			arg, s, qok = quotedString(s)
			ok = ok && qok
		} else {
			j := 0
			for j < len(s) && isTchar(s[j]) {
				j++
			}
			arg, s = s[:j], s[j:]
			ok = ok && j > 0
		}
	}
	s = trimOWS(s)
	if s == "" {
		return name, arg, ok, ""
	}
	if s[0] == ',' {
		return name, arg, ok, s[1:]
	}
	// Junk after the member: drop it up to the next comma.
	if c := strings.IndexByte(s, ','); c >= 0 {
		return name, arg, false, s[c+1:]
	}
	return name, arg, false, ""
}

// quotedString reads a quoted-string at the start of s (s[0] == '"') and
// returns its unescaped content and what follows the closing quote. ok is
// false when the string is not closed; rest is then "".
func quotedString(s string) (val, rest string, ok bool) {
	escaped := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			val = s[1:i]
			if escaped {
				val = unescape(val)
			}
			return val, s[i+1:], true
		}
	}
	return "", "", false
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deltaSeconds parses 1*DIGIT, capping the value at maxDelta.
func deltaSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

func trimOWS(s string) string {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := len(s)
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// matchETags reports whether If-None-Match (strong false) or If-Match
// (strong true) field values match etag, a strong quoted entity-tag. "*"
// matches. If-None-Match uses the weak comparison of RFC 9110 §13.1.2: any
// member W/"x" or "x" whose opaque tag equals etag's matches; If-Match the
// strong one: only a member "x" does, never a weak W/"x". A member that is
// not a valid entity-tag (an unquoted tag, a space inside the quotes) ends
// the parsing of its field line, which then matches only if an earlier
// member did: since a comma may appear inside an entity-tag, there is no
// safe way to resynchronise.
func matchETags(values []string, etag string, strong bool) bool {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				r := trimOWS(v[1:])
				if r == "" || r[0] == ',' {
					return true
				}
				break
			}
			tag, weak, rest, ok := scanETag(v)
			rest = trimOWS(rest)
			if !ok || rest != "" && rest[0] != ',' {
				break
			}
			if tag == etag && !(strong && weak) {
				return true
			}
			v = rest
		}
	}
	return false
}

// scanETag reads an entity-tag at the start of s: [W/] DQUOTE *etagc DQUOTE
// with etagc = %x21 / %x23-7E / obs-text. tag is the opaque tag with its
// quotes; rest is what follows it.
func scanETag(s string) (tag string, weak bool, rest string, ok bool) {
	if strings.HasPrefix(s, "W/") {
		weak, s = true, s[2:]
	}
	if s == "" || s[0] != '"' {
		return "", false, "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], weak, s[i+1:], true
		case c == 0x21, 0x23 <= c && c != 0x7f:
		default:
			return "", false, "", false
		}
	}
	return "", false, "", false
}

// matchIfNoneMatch is matchETags for If-None-Match.
func matchIfNoneMatch(values []string, etag string) bool { return matchETags(values, etag, false) }

// httpDate parses the field values of a date header (If-Unmodified-Since):
// ok is false when there is not exactly one line or it is not an
// HTTP-date, in which case RFC 9110 has the header ignored.
func httpDate(v []string) (t time.Time, ok bool) {
	if len(v) != 1 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v[0])
	return t, err == nil
}

// modifiedSince returns the date of If-Modified-Since, given its lines v. ok is false
// when it is absent, has more than one member, is not an HTTP-date, or lies
// after now (RFC 9110 §13.1.3), in which cases it is ignored.
func modifiedSince(v []string, now time.Time) (t time.Time, ok bool) {
	if len(v) != 1 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v[0])
	if err != nil || t.After(now) {
		return time.Time{}, false
	}
	return t, true
}

// hasCredentials reports whether the request carries Authorization or
// Cookie, even empty.
func hasCredentials(h http.Header) bool {
	return len(h["Authorization"]) > 0 || len(h["Cookie"]) > 0
}
