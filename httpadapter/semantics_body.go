package httpadapter

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"reflect"
	"sync/atomic"

	"github.com/gomemo/memo"
)

// Responder is implemented by a result type that chooses its answer's
// status and adds header fields to it (a Location with a 201 Created, a
// Content-Language, a Link). The handler calls Respond once per stored
// entry, on a value decoded from the entry, and serves what it said with
// every answer of that entry, hits and 304s included, so that caching is
// kept: the method must depend on the value alone. Respond adds fields to
// h and returns the status: 0 for 200, or 200–299 other than 204, 205 and
// 206, which carry no ordinary body; any other status, or a Set-Cookie
// field (which would hand one caller's cookie to every caller), makes the
// answer a logged 500. A Content-Type field replaces the handler's; the
// handler's own fields (ETag, Cache-Control, Last-Modified, Content-Length,
// Cache-Status, the HIT/MISS header) win over the method's; Vary names are
// added to the handler's. Respond may have a value or a pointer receiver.
type Responder interface {
	Respond(h http.Header) (status int)
}

// shape is how a handler turns an entry into a body.
type shape struct {
	raw       bool // a string or []byte result, served as is
	str       bool // raw, and a string: its JSON is a quoted string
	responder bool // R or *R implements Responder
}

// shapeOf tells how a result of type R is served: as is when raw is asked
// (a ContentType was given) and R is a string or a []byte (or a type
// defined on one), as JSON otherwise.
func shapeOf[R any](raw bool) shape {
	t := reflect.TypeFor[R]()
	var s shape
	if raw {
		s.str = t.Kind() == reflect.String
		s.raw = s.str || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8
	}
	rt := reflect.TypeFor[Responder]()
	s.responder = t.Implements(rt) || reflect.PointerTo(t).Implements(rt)
	return s
}

// answer is what a handler serves for an entry.
type answer struct {
	body   []byte
	etag   string
	ctype  string
	status int
	header http.Header // a Responder's fields; nil without
}

// rendered is an answer the handler worked out from an entry's decoded
// value, kept in its renderCache.
type rendered struct {
	key, codec string // the entry's ETag (its payload's hash) and codec
	answer
	err error // the Responder's error: the answer is a 500
}

// renderCache holds the answers of recently served entries whose body is
// not the stored payload as is (a raw string or []byte, a Responder,
// another codec than memo.JSON), so that an entry is decoded once rather
// than on every request. Slots are picked by the entry's hash; a slot
// holds one answer and the latest entry to land in it replaces it.
type renderCache struct {
	slots [renderSlots]atomic.Pointer[rendered]
}

const renderSlots = 64

func slotOf(key string) int {
	if len(key) < 3 {
		return 0
	}
	// key is a quoted base64url hash: its characters are evenly spread.
	return (int(key[1])*64 + int(key[2])) % renderSlots
}

// render returns the answer for e, whose ETag is key. With memo.JSON and
// a result served as JSON, the stored payload is the body and its hash the
// ETag; otherwise the entry is decoded once and what it gives is kept in
// h.renders.
func (h *handler[A, R]) render(e *memo.Entry, key string) (answer, error) {
	json := e.Codec.Name() == memo.JSON.Name()
	if json && !h.shape.raw && !h.shape.responder {
		return answer{body: e.Payload, etag: key, ctype: h.ctype, status: http.StatusOK}, nil
	}
	if json && h.shape.str && !h.shape.responder {
		// A JSON string with no escape is its own text between quotes.
		if p := e.Payload; len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' && bytes.IndexByte(p, '\\') < 0 {
			return answer{body: p[1 : len(p)-1], etag: key, ctype: h.ctype, status: http.StatusOK}, nil
		}
	}
	slot := &h.renders.slots[slotOf(key)]
	name := e.Codec.Name()
	if c := slot.Load(); c != nil && c.key == key && c.codec == name {
		return c.answer, c.err
	}
	v, err := h.f.Decode(e)
	if err != nil {
		return answer{}, err
	}
	c := &rendered{key: key, codec: name, answer: answer{ctype: h.ctype, status: http.StatusOK}}
	if json {
		c.etag = key
	} else {
		// The hash of the JSON encoding, as memo.JSON would have stored
		// it: the same ETag whichever codec stored the value.
		j, err := memo.JSON.Marshal(&v)
		if err != nil {
			return answer{}, err
		}
		c.etag = etagOf(j)
		if !h.shape.raw {
			c.body = j
		}
	}
	if h.shape.raw {
		rv := reflect.ValueOf(&v).Elem()
		if rv.Kind() == reflect.String {
			c.body = []byte(rv.String())
		} else {
			c.body = rv.Bytes()
		}
	} else if json {
		c.body = e.Payload
	}
	if h.shape.responder {
		c.err = respond(&v, &c.answer)
	}
	slot.Store(c)
	return c.answer, c.err
}

// respond calls v's Respond method and checks what it says.
func respond[R any](v *R, a *answer) error {
	rs, ok := any(*v).(Responder)
	if !ok {
		rs = any(v).(Responder)
	}
	hd := http.Header{}
	status := rs.Respond(hd)
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 299 || status == http.StatusNoContent || status == http.StatusResetContent || status == http.StatusPartialContent {
		return fmt.Errorf("httpadapter: %T.Respond returned status %d: want 200–299 other than 204, 205, 206", *v, status)
	}
	if _, ok := hd["Set-Cookie"]; ok {
		return fmt.Errorf("httpadapter: %T.Respond set a Set-Cookie field on a cached answer", *v)
	}
	if ct := hd.Get("Content-Type"); ct != "" {
		a.ctype = ct
	}
	for _, k := range []string{"Content-Type", "Content-Length", "Etag", "Cache-Control", "Last-Modified", "Age", "Cache-Status", "Expires", "Pragma"} {
		delete(hd, k)
	}
	a.status = status
	if len(hd) > 0 {
		a.header = hd
	}
	return nil
}

// etagOf computes an entity-tag the way memo does for a JSON payload (the
// first 16 bytes of SHA-256, base64url, quoted), so that a body has the same
// ETag whichever codec stored it.
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	var b [24]byte
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:23], sum[:16])
	b[23] = '"'
	return string(b[:])
}
