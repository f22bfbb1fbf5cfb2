package memo

import (
	"encoding/binary"
	"errors"
)

// MaxDepth is the deepest nesting of arrays and objects (maps) that memo's
// codecs decode. A stored payload nested deeper is refused before decoding:
// a corrupt or hostile entry must cost a miss, not a stack overflow or the
// quadratic time some decoders take on deep nesting.
const MaxDepth = 512

var (
	errTooDeep = errors.New("memo: payload nested deeper than MaxDepth")
	errBadPack = errors.New("memo: malformed msgpack payload")
)

// checkJSON refuses JSON text nested deeper than MaxDepth. It does not
// validate the rest: the decoder does.
func checkJSON(b []byte) error {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth > MaxDepth {
				return errTooDeep
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// checkMsgpack walks one msgpack value without allocating and refuses it
// when it is nested deeper than MaxDepth, declares a length its bytes
// cannot hold (a 4 GiB string in 12 bytes), or is followed by trailing
// bytes: the decoder would otherwise allocate what the header declares.
func checkMsgpack(b []byte) error {
	// pending[d] counts the values still expected at depth d.
	var pending [MaxDepth + 1]uint64
	depth := 0
	pending[0] = 1
	i := 0
	for {
		for depth > 0 && pending[depth] == 0 {
			depth--
		}
		if pending[depth] == 0 {
			break
		}
		pending[depth]--
		if i >= len(b) {
			return errBadPack
		}
		c := b[i]
		i++
		var skip, items uint64 // bytes to skip; values inside
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			var n uint64 // a length read from the next bytes
			var w int    // its width
			switch c {
			case 0xc4, 0xd9: // bin8, str8
				w = 1
			case 0xc5, 0xda: // bin16, str16
				w = 2
			case 0xc6, 0xdb: // bin32, str32
				w = 4
			case 0xc7: // ext8
				w, skip = 1, 1
			case 0xc8: // ext16
				w, skip = 2, 1
			case 0xc9: // ext32
				w, skip = 4, 1
			case 0xca:
				skip = 4
			case 0xcb:
				skip = 8
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xce, 0xd2:
				skip = 4
			case 0xcf, 0xd3:
				skip = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
				skip = 1 + 1<<(c-0xd4)
			case 0xdc: // array16
				w = 2
			case 0xdd: // array32
				w = 4
			case 0xde: // map16
				w = 2
			case 0xdf: // map32
				w = 4
			default: // 0xc1 is never used
				return errBadPack
			}
			if w > 0 {
				if len(b)-i < w {
					return errBadPack
				}
				switch w {
				case 1:
					n = uint64(b[i])
				case 2:
					n = uint64(binary.BigEndian.Uint16(b[i:]))
				case 4:
					n = uint64(binary.BigEndian.Uint32(b[i:]))
				}
				i += w
				switch c {
				case 0xdc, 0xdd:
					items = n
				case 0xde, 0xdf:
					items = 2 * n
				default:
					skip += n
				}
			}
		}
		if skip > uint64(len(b)-i) {
			return errBadPack
		}
		i += int(skip)
		if items > 0 {
			// Each value takes at least one byte.
			if items > uint64(len(b)-i) {
				return errBadPack
			}
			if depth++; depth > MaxDepth {
				return errTooDeep
			}
			pending[depth] = items
		}
	}
	if i != len(b) {
		return errBadPack
	}
	return nil
}
