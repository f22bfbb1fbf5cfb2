package memo

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// The stored format, version 1. Every value memo writes to a backend is an
// envelope:
//
//	offset  size  field
//	0       1     magic 'm'
//	1       1     format version (1)
//	2       1     n: length of the codec name
//	3       n     codec name ("json", "msgpack", ...)
//	3+n     8     fingerprint of the result type R
//	11+n    8     stored-at, Unix nanoseconds
//	19+n    8     fresh-until, Unix nanoseconds (0: never expires)
//	27+n    8     stale-until, Unix nanoseconds (0: none)
//	35+n    16    ETag: the first 16 bytes of SHA-256 of the payload
//	51+n    4     payload length p
//	55+n    p     payload: the codec's encoding of R
//
// Integers are big-endian. The envelope carries everything a reader needs
// (expiry, entity tag), so no backend has to report a remaining TTL.
const (
	envMagic   = 'm'
	envVersion = 1
	envFixed   = 55 // header bytes besides the codec name
)

var (
	errEnvShort   = errors.New("memo: entry truncated")
	errEnvMagic   = errors.New("memo: entry is not a memo envelope")
	errEnvVersion = errors.New("memo: entry has an unknown format version")
	errEnvLength  = errors.New("memo: entry payload length does not match")
)

// envelope is a decoded entry. Its slices alias the bytes it was read from.
type envelope struct {
	codec      []byte
	fp         [8]byte
	storedAt   int64
	freshUntil int64
	staleUntil int64
	etag       [16]byte
	payload    []byte
	raw        []byte // the whole envelope, when it was read from a backend
}

// encodeEnvelope builds the stored bytes for payload.
func encodeEnvelope(codec string, fp [8]byte, storedAt, freshUntil, staleUntil int64, payload []byte) (env []byte, etag [16]byte) {
	b := make([]byte, envHeaderLen(codec)+len(payload))
	copy(b[envHeaderLen(codec):], payload)
	return b, putEnvelopeHeader(b, codec, fp, storedAt, freshUntil, staleUntil)
}

// envHeaderLen is the length of an envelope's header for codec.
func envHeaderLen(codec string) int { return envFixed + len(codec) }

// putEnvelopeHeader fills the header of b, whose payload already follows
// it, and returns the payload's ETag.
func putEnvelopeHeader(b []byte, codec string, fp [8]byte, storedAt, freshUntil, staleUntil int64) (etag [16]byte) {
	n := len(codec)
	payload := b[envHeaderLen(codec):]
	sum := sha256.Sum256(payload)
	copy(etag[:], sum[:16])
	b[0], b[1], b[2] = envMagic, envVersion, byte(n)
	copy(b[3:], codec)
	o := 3 + n
	copy(b[o:], fp[:])
	binary.BigEndian.PutUint64(b[o+8:], uint64(storedAt))
	binary.BigEndian.PutUint64(b[o+16:], uint64(freshUntil))
	binary.BigEndian.PutUint64(b[o+24:], uint64(staleUntil))
	copy(b[o+32:], etag[:])
	binary.BigEndian.PutUint32(b[o+48:], uint32(len(payload)))
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
	if b[1] != envVersion {
		return e, errEnvVersion
	}
	n := int(b[2])
	if len(b) < envFixed+n {
		return e, errEnvShort
	}
	e.codec = b[3 : 3+n]
	o := 3 + n
	copy(e.fp[:], b[o:])
	e.storedAt = int64(binary.BigEndian.Uint64(b[o+8:]))
	e.freshUntil = int64(binary.BigEndian.Uint64(b[o+16:]))
	e.staleUntil = int64(binary.BigEndian.Uint64(b[o+24:]))
	copy(e.etag[:], b[o+32:])
	p := binary.BigEndian.Uint32(b[o+48:])
	if uint64(len(b)-o-52) != uint64(p) {
		return e, errEnvLength
	}
	e.payload = b[o+52:]
	return e, nil
}

// quoteETag renders an entity tag as a quoted strong HTTP ETag.
func quoteETag(t [16]byte) string {
	var b [2 + 22]byte
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:23], t[:])
	b[23] = '"'
	return string(b[:])
}
