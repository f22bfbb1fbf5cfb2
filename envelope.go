package memo

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// The stored format. Every value memo writes to a backend is an envelope;
// memo writes version 2 and reads versions 1 and 2 for good:
//
//	offset  size  field
//	0       1     magic 'm'
//	1       1     format version (2)
//	2       1     n: length of the codec name
//	3       n     codec name ("json", "msgpack", ...)
//	3+n     8     fingerprint of the result type R
//	11+n    8     stored-at, Unix nanoseconds
//	19+n    8     fresh-until, Unix nanoseconds (0: never expires)
//	27+n    8     stale-until, Unix nanoseconds: the end of the stale windows
//	35+n    8     compute duration: how long fn took, nanoseconds (v2)
//	43+n    1     kind: 0 an answer, 1 a remembered not-found, 2 a
//	              remembered error (v2)
//	44+n    16    ETag: the first 16 bytes of SHA-256 of the payload
//	60+n    4     payload length p
//	64+n    p     payload: the codec's encoding of R; for kinds 1 and 2,
//	              a 2-byte length s, the sentinel's text (s bytes), then
//	              fn's error text
//
// Version 1 lacks the compute duration and the kind (an answer, computed
// in no time). Integers are big-endian. The envelope carries everything a
// reader needs (expiry, entity tag), so no backend has to report a
// remaining TTL.
const (
	envMagic   = 'm'
	envVersion = 2
	envFixed   = 64 // header bytes besides the codec name
	envFixedV1 = 55
)

// Kinds of entry.
const (
	kindValue    = 0
	kindNegative = 1 // fn's error matched a NegativeCache sentinel
	kindError    = 2 // fn's error, remembered by CacheErrors
)

var (
	errEnvShort   = errors.New("memo: entry truncated")
	errEnvMagic   = errors.New("memo: entry is not a memo envelope")
	errEnvVersion = errors.New("memo: entry has an unknown format version")
	errEnvLength  = errors.New("memo: entry payload length does not match")
	errEnvKind    = errors.New("memo: entry has an unknown kind")
)

// meta is what an envelope says of its payload.
type meta struct {
	storedAt   int64 // wall clock, Unix nanoseconds
	freshUntil int64 // wall clock; 0: never expires
	staleUntil int64 // wall clock; the stale windows end; 0 with freshUntil 0
	compute    int64 // how long fn took, nanoseconds
	kind       byte
}

// envelope is a decoded entry. Its slices alias the bytes it was read from.
type envelope struct {
	meta
	codec   []byte
	fp      [8]byte
	etag    [16]byte
	payload []byte
	raw     []byte // the whole envelope, when it was read from a backend
	readAt  int64  // the wall clock when it was read, when it was checked
}

// encodeEnvelope builds the stored bytes for payload.
func encodeEnvelope(codec string, fp [8]byte, m meta, payload []byte) (env []byte, etag [16]byte) {
	b := make([]byte, envHeaderLen(codec)+len(payload))
	copy(b[envHeaderLen(codec):], payload)
	return b, putEnvelopeHeader(b, codec, fp, m)
}

// envHeaderLen is the length of an envelope's header for codec.
func envHeaderLen(codec string) int { return envFixed + len(codec) }

// putEnvelopeHeader fills the header of b, whose payload already follows
// it, and returns the payload's ETag.
func putEnvelopeHeader(b []byte, codec string, fp [8]byte, m meta) (etag [16]byte) {
	n := len(codec)
	payload := b[envHeaderLen(codec):]
	sum := sha256.Sum256(payload)
	copy(etag[:], sum[:16])
	b[0], b[1], b[2] = envMagic, envVersion, byte(n)
	copy(b[3:], codec)
	o := 3 + n
	copy(b[o:], fp[:])
	binary.BigEndian.PutUint64(b[o+8:], uint64(m.storedAt))
	binary.BigEndian.PutUint64(b[o+16:], uint64(m.freshUntil))
	binary.BigEndian.PutUint64(b[o+24:], uint64(m.staleUntil))
	binary.BigEndian.PutUint64(b[o+32:], uint64(m.compute))
	b[o+40] = m.kind
	copy(b[o+41:], etag[:])
	binary.BigEndian.PutUint32(b[o+57:], uint32(len(payload)))
	return etag
}

// decodeEnvelope parses b without copying. Any malformed input is an error,
// never a panic, and nothing is allocated whatever lengths b declares.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 3 {
		return e, errEnvShort
	}
	if b[0] != envMagic {
		return e, errEnvMagic
	}
	fixed := envFixed
	switch b[1] {
	case 1:
		fixed = envFixedV1
	case envVersion:
	default:
		return e, errEnvVersion
	}
	n := int(b[2])
	if len(b) < fixed+n {
		return e, errEnvShort
	}
	e.codec = b[3 : 3+n]
	o := 3 + n
	copy(e.fp[:], b[o:])
	e.storedAt = int64(binary.BigEndian.Uint64(b[o+8:]))
	e.freshUntil = int64(binary.BigEndian.Uint64(b[o+16:]))
	e.staleUntil = int64(binary.BigEndian.Uint64(b[o+24:]))
	o += 32
	if b[1] == envVersion {
		e.compute = int64(binary.BigEndian.Uint64(b[o:]))
		e.kind = b[o+8]
		if e.kind > kindError {
			return e, errEnvKind
		}
		o += 9
	}
	copy(e.etag[:], b[o:])
	p := binary.BigEndian.Uint32(b[o+16:])
	if uint64(len(b)-o-20) != uint64(p) {
		return e, errEnvLength
	}
	e.payload = b[o+20:]
	if e.kind != kindValue {
		if len(e.payload) < 2 || int(binary.BigEndian.Uint16(e.payload)) > len(e.payload)-2 {
			return e, errEnvLength
		}
	}
	return e, nil
}

// errorPayload is the payload of a remembered error: the sentinel's text
// (empty for kindError), then fn's error text.
func errorPayload(sentinel, text string) []byte {
	if len(sentinel) > 0xffff {
		sentinel = sentinel[:0xffff]
	}
	b := make([]byte, 2, 2+len(sentinel)+len(text))
	binary.BigEndian.PutUint16(b, uint16(len(sentinel)))
	return append(append(b, sentinel...), text...)
}

// splitErrorPayload undoes errorPayload; p has been checked by
// decodeEnvelope (or was built by errorPayload).
func splitErrorPayload(p []byte) (sentinel, text string) {
	s := int(binary.BigEndian.Uint16(p))
	return string(p[2 : 2+s]), string(p[2+s:])
}

// quoteETag renders an entity tag as a quoted strong HTTP ETag.
func quoteETag(t [16]byte) string {
	var b [etagLen]byte
	return string(appendETag(b[:0], t))
}

// etagLen is the length of a quoted ETag: two quotes around the 22
// base64url characters of 16 bytes.
const etagLen = 2 + 22

func appendETag(dst []byte, t [16]byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, etagLen)...)
	b := dst[n:]
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:23], t[:])
	b[23] = '"'
	return dst
}
