package vswitch

import (
	"encoding/binary"
	"math/bits"
)

// The Internet checksum (RFC 1071). Summing big-endian 64-bit words with
// end-around carry and folding at the end gives the same one's complement
// sum as 16-bit words (RFC 1071 §2 (B) byte-order independence, (C)
// parallel summation). b must start at an even offset of the summed data.
func csumAdd(sum uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	sum, c = bits.Add64(sum, 0, c)
	sum += c
	var tail uint64
	switch {
	case len(b) >= 4:
		tail = uint64(binary.BigEndian.Uint32(b)) << 32
		b = b[4:]
		if len(b) >= 2 {
			tail |= uint64(binary.BigEndian.Uint16(b)) << 16
			b = b[2:]
		}
		if len(b) == 1 {
			tail |= uint64(b[0]) << 8
		}
	case len(b) >= 2:
		tail = uint64(binary.BigEndian.Uint16(b)) << 48
		if len(b) == 3 {
			tail |= uint64(b[2]) << 40
		}
	case len(b) == 1:
		tail = uint64(b[0]) << 56
	}
	sum, c = bits.Add64(sum, tail, 0)
	return sum + c
}

// csumFold folds a 64-bit one's complement sum to 16 bits.
func csumFold(sum uint64) uint16 {
	s := (sum >> 32) + (sum & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// pseudoSum is the TCP/UDP pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1).
func pseudoSum(src, dst []byte, proto uint8, l4len int) uint64 {
	s := csumAdd(0, src)
	s = csumAdd(s, dst)
	s, c := bits.Add64(s, uint64(proto)+uint64(l4len), 0)
	return s + c
}

// completeCsum finishes a partial checksum the way virtio 1.2 §5.1.6.2
// describes: the one's complement sum from csum_start to the end of the
// frame, stored at csum_start + csum_offset (whose field already holds the
// pseudo-header sum). A zero result is sent as 0xffff, as UDP requires
// (RFC 768) and TCP accepts.
func completeCsum(data []byte, start, offset int) {
	binary.BigEndian.PutUint16(data[start+offset:], ^csumFold(csumAdd(0, data[start:])))
	if binary.BigEndian.Uint16(data[start+offset:]) == 0 {
		binary.BigEndian.PutUint16(data[start+offset:], 0xffff)
	}
}
