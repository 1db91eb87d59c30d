package uplink

import (
	"sync/atomic"
	"unsafe"
)

// The status words of ring blocks (tpacket_hdr_v1.block_status) and TX
// slots (tpacket2_hdr.tp_status) are shared with the kernel, which reads
// and writes them with barriers (smp_rmb/smp_wmb in af_packet.c); user
// space must load and store them atomically. off must be 4-byte aligned
// relative to the page-aligned mapping, which every caller's offset is.

func statusWord(b []byte, off int) *uint32 {
	_ = b[off+3] // bounds check before taking the address
	return (*uint32)(unsafe.Pointer(&b[off]))
}

func loadStatus(b []byte, off int) uint32 { return atomic.LoadUint32(statusWord(b, off)) }

func storeStatus(b []byte, off int, v uint32) { atomic.StoreUint32(statusWord(b, off), v) }
