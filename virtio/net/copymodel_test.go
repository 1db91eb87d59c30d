package vnet_test

import (
	"fmt"
	"testing"
)

// copyModel is the memory side of `hvnet bench vhost` at 1514 B without
// the rings: one pool of generator buffers (DPDK mbufs, 2176 bytes
// apart), a transmit ring of sources and a receive ring of destinations
// used in ring order, and the buffers the generator frees going to a
// last-in-first-out cache that refills both rings, as flowgen and
// virtio-user do. Each step copies one frame (the 12-byte virtio-net
// header and 1514 bytes) from the next source to the next destination.
type copyModel struct {
	mem        []byte
	tx, rx     []int // buffer indexes in ring order
	head       int
	cache      []int
	mbuf       []byte // the forwarder's own buffer (testpmd's mbuf)
	viaForward bool   // copy through mbuf, as testpmd's vhost PMD does
}

const (
	modelStride = 2176 // rte_mbuf + 128 headroom + 2048 data room
	modelLen    = 12 + 1514
	modelTXOff  = 128      // flowgen's frame after the headroom
	modelRXOff  = 128 - 12 // virtio-user posts the header in the headroom
)

func newCopyModel(buffers, ringSize int, viaForward bool) *copyModel {
	m := &copyModel{mem: make([]byte, buffers*modelStride), mbuf: make([]byte, modelStride), viaForward: viaForward}
	for i := range m.mem {
		m.mem[i] = byte(i)
	}
	for i := range ringSize {
		m.tx = append(m.tx, i)
		m.rx = append(m.rx, ringSize+i)
	}
	for i := 2 * ringSize; i < buffers; i++ {
		m.cache = append(m.cache, i)
	}
	return m
}

func (m *copyModel) buf(i, off int) []byte {
	return m.mem[i*modelStride+off : i*modelStride+off+modelLen]
}

// step forwards one frame and lets the generator recycle both buffers.
func (m *copyModel) step() {
	src, dst := m.tx[m.head], m.rx[m.head]
	if m.viaForward {
		copy(m.mbuf[modelTXOff:], m.buf(src, modelTXOff))
		copy(m.buf(dst, modelRXOff), m.mbuf[modelTXOff:modelTXOff+modelLen])
	} else {
		copy(m.buf(dst, modelRXOff), m.buf(src, modelTXOff))
	}
	// The generator frees the sent buffer, refills the receive slot and
	// sends a new frame from its cache, then frees the received one.
	m.cache = append(m.cache, src)
	n := len(m.cache)
	m.rx[m.head], m.tx[m.head] = m.cache[n-1], m.cache[n-2]
	m.cache = append(m.cache[:n-2], dst)
	if m.head++; m.head == len(m.tx) {
		m.head = 0
	}
}

// BenchmarkCopyModel compares, on one core, the frame copy of hvnet
// (the sender's buffer straight into the receiver's) with testpmd's
// (into an mbuf of its own, hot in L1, and out again) over the buffers
// the benchmark's generator cycles through: ring size 1024, as `bench
// vhost` runs it (about 6 MiB of buffers: L3), and 128. See
// vhost/BENCH_NOTES.md, session 23.
func BenchmarkCopyModel(b *testing.B) {
	for _, ring := range []int{128, 1024} {
		for _, via := range []bool{false, true} {
			name := "direct"
			if via {
				name = "via-mbuf"
			}
			b.Run(fmt.Sprintf("ring%d/%s", ring, name), func(b *testing.B) {
				m := newCopyModel(8192, ring, via)
				b.SetBytes(modelLen)
				b.ResetTimer()
				for range b.N {
					m.step()
				}
			})
		}
	}
}

// TestCopyModelCycles checks the model's bookkeeping: every buffer stays
// in exactly one place (a ring or the cache) and each step moves the
// frame bytes from the source to the destination.
func TestCopyModelCycles(t *testing.T) {
	for _, via := range []bool{false, true} {
		m := newCopyModel(64, 8, via)
		for step := range 1000 {
			src, dst := m.tx[m.head], m.rx[m.head]
			m.buf(src, modelTXOff)[0] = byte(step)
			m.buf(src, modelTXOff)[modelLen-1] = byte(step + 1)
			m.step()
			if got := m.buf(dst, modelRXOff); got[0] != byte(step) || got[modelLen-1] != byte(step+1) {
				t.Fatalf("via %v step %d: destination holds %d..%d, not the frame", via, step, got[0], got[modelLen-1])
			}
			seen := make(map[int]int)
			for _, l := range [][]int{m.tx, m.rx, m.cache} {
				for _, i := range l {
					seen[i]++
				}
			}
			if len(seen) != 64 {
				t.Fatalf("via %v step %d: %d buffers accounted for, want 64", via, step, len(seen))
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("via %v step %d: buffer %d in %d places", via, step, i, n)
				}
			}
		}
	}
}
