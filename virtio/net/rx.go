package vnet

import (
	"encoding/binary"
	"errors"

	"github.com/hvnet/hvnet/frame"
	"github.com/hvnet/hvnet/virtio"
)

var (
	errRxReadable  = errors.New("driver-readable buffer in an RX chain")
	errRxSmall     = errors.New("RX buffer smaller than the virtio-net header")
	errRxTooMany   = errors.New("frame needs more buffers than the queue holds")
	errRxNoOffload = errors.New("frame offload not negotiated by the guest")
	errRxSource    = errors.New("the sender's memory faulted while its frame's tail was copied")
)

type rxQueue struct {
	vq
	hdr   [HdrLen]byte
	two   [2]byte
	heads []uint16
	lens  []uint32

	// A burst (rxReserve, rxCommit): its steps, how many chains it
	// popped, the frame it stopped at, and the chain it left popped
	// for that frame when it does not fit the chain's first buffer.
	steps  [rxBurst]rxStep
	errs   [rxBurst]error // stepBadChain: what is wrong with the chain
	nSteps int
	popped uint16
	next   int
	slow   *virtio.Chain
}

// rxResult is the outcome of one frame.
type rxResult int

const (
	rxDone     rxResult = iota // written to the guest
	rxDropped                  // dropped, counted; go on
	rxNoBuffer                 // out of guest buffers; stop
	rxFault                    // the queue is broken; stop
)

// Receive delivers frames to the guest, steering each to a queue pair among
// the active ones by a hash of its addresses (§5.1.6.5.5 automatic receive
// steering keeps a flow on one queue). It returns how many frames were
// written, n, and leaves those frames in frames[:n], in their order (it
// reorders frames: vswitch.Port.Send's contract); the rest were dropped and
// counted. The frames' bytes are only read.
//
// Frames must be finished (complete checksums, no GSO) unless the guest
// negotiated the matching offload (GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN,
// GUEST_UFO, GUEST_USO4/6, as currently enabled by
// CTRL_GUEST_OFFLOADS_SET): frames the guest cannot take are dropped and
// counted in RxDropOffload. Safe for concurrent use.
func (d *Device) Receive(frames []Frame) int {
	active := int(d.activePairs.Load())
	if active <= 1 {
		return d.ReceiveOn(0, frames)
	}
	accepted := 0
	for start := 0; start < len(frames); {
		p := flowHash(frames[start].Data) % uint32(active)
		end := start + 1
		for end < len(frames) && flowHash(frames[end].Data)%uint32(active) == p {
			end++
		}
		n := d.ReceiveOn(int(p), frames[start:end])
		// This run's written frames join the ones before them; the
		// dropped ones they pass move behind (in-order swaps).
		for k := range n {
			frames[accepted+k], frames[start+k] = frames[start+k], frames[accepted+k]
		}
		accepted += n
		start = end
	}
	return accepted
}

// flowHash hashes the Ethernet addresses and, for IPv4, the IP addresses
// and the first four bytes of the transport header (ports).
func flowHash(b []byte) uint32 {
	h := uint32(2166136261)
	mix := func(p []byte) {
		for _, c := range p {
			h = (h ^ uint32(c)) * 16777619
		}
	}
	if len(b) < frame.EthHdrLen {
		return 0
	}
	mix(b[:12])
	if binary.BigEndian.Uint16(b[12:]) == 0x0800 && len(b) >= frame.EthHdrLen+20 {
		ihl := int(b[frame.EthHdrLen]&0x0f) * 4
		mix(b[frame.EthHdrLen+12 : frame.EthHdrLen+20])
		if l4 := frame.EthHdrLen + ihl; ihl >= 20 && len(b) >= l4+4 {
			mix(b[l4 : l4+4])
		}
	}
	return h
}

// ReceiveOn is Receive on one queue pair's receive queue.
//
// Virtio 1.2 §5.1.6.3-§5.1.6.4: each frame is written behind a
// virtio_net_hdr_v1 into one chain, or with VIRTIO_NET_F_MRG_RXBUF into as
// many chains as it needs, num_buffers saying how many.
//
// A fault on guest memory (a frontend that shrank its memory) breaks the
// queue and returns 0: the frames are not accounted as received.
func (d *Device) ReceiveOn(pairIdx int, frames []Frame) (accepted int) {
	if pairIdx < 0 || pairIdx >= len(d.pairs) || d.controlOnly {
		d.stats.rxNoBuffer.Add(uint64(len(frames)))
		return 0
	}
	r := &d.pairs[pairIdx].rx
	r.mu.Lock()
	defer r.mu.Unlock()
	defer d.guard(&r.vq, virtio.TrapFaults())
	q := r.q
	if !q.Ready() || q.Broken() != nil {
		d.stats.rxNoBuffer.Add(uint64(len(frames)))
		return 0
	}
	if cap(r.heads) < int(q.Size()) {
		r.heads = make([]uint16, q.Size())
		r.lens = make([]uint32, q.Size())
	}
	mrg := has(d.features.Load(), FMrgRxbuf)
	guest := d.rxOffloads.Load()
	var bytes uint64
	i := 0
loop:
	for i < len(frames) {
		// Phase 1: reserve the chains of up to rxBurst frames.
		stop, slow := d.rxReserve(r, frames, i, mrg, guest)
		// Phases 2 and 3: write them, then their used entries.
		next, rewound := d.rxCommit(r, frames, guest, &accepted, &bytes)
		i = next
		switch {
		case rewound:
			// A frame's tail faulted: the chains from its own on went
			// back to the ring; the frames behind it are taken again.
			continue
		case stop:
			break loop
		case !slow:
			continue
		}
		// Frame i did not fit the first buffer of the chain reserved
		// for it (still popped, r.slow): written across the chain's
		// buffers or, mergeable, across chains.
		f := &frames[i]
		h := rxHeader(f, guest)
		var res rxResult
		if mrg {
			res = d.rxMerged(r, h, f.Data, f.Tail, r.slow)
		} else {
			res = d.rxOne(r, r.slow, h, f.Data, f.Tail)
		}
		r.slow = nil
		switch res {
		case rxDone:
			bytes += uint64(f.Len())
			if accepted != i { // written ones first, in order
				frames[accepted], frames[i] = frames[i], frames[accepted]
			}
			accepted++
		case rxNoBuffer, rxFault:
			break loop
		}
		i++
	}
	if i < len(frames) {
		d.stats.rxNoBuffer.Add(uint64(len(frames) - i))
	}
	d.stats.rxPackets.Add(uint64(accepted))
	d.stats.rxBytes.Add(bytes)
	d.flush(&r.vq)
	return accepted
}

// rxHeader is what the guest is told of a frame's offload, of what it
// negotiated.
func rxHeader(f *Frame, guest uint64) frame.Offload {
	var h frame.Offload
	if has(guest, FGuestCsum) {
		h.Flags = f.Off.Flags & (frame.NeedsCsum | frame.DataValid)
		h.CsumStart, h.CsumOffset = f.Off.CsumStart, f.Off.CsumOffset
	}
	if f.Off.GSOType != frame.GSONone {
		h.GSOType, h.GSOSize, h.HdrLen = f.Off.GSOType, f.Off.GSOSize, f.Off.HdrLen
	}
	return h
}

// rxBurst is the most steps one reserve phase holds (DPDK's vhost library
// takes bursts of MAX_PKT_BURST 32; the switch hands up to 64 frames).
const rxBurst = 64

// rxStep is one step of a burst, in the order the frames and chains came:
// what phase 1 decided, done (counted, written, used) by phase 2 and 3.
type rxStep struct {
	b    []byte // stepWrite: the header's and frame's bytes in the guest's buffer
	gpa  uint64 // stepWrite: b's guest address; stepTooBig: the chain's writable length
	fi   int32  // the frame
	pos  uint16 // stepWrite, stepBadChain: the chain's ordinal among the burst's pops
	head uint16 // stepWrite, stepBadChain: the chain
	kind uint8
}

const (
	stepWrite    = iota // frame fi goes into b, chain head is used with len(b)
	stepBadChain        // chain head is bad: counted, used with length 0; frame fi dropped
	stepTooBig          // frame fi is larger than its chain (kept for the next frame)
	stepOversize        // frame fi is larger than MaxFrameLen
	stepOffload         // frame fi has an offload the guest did not negotiate
)

// rxReserve is phase 1 of a burst, after DPDK's virtio_dev_rx_split
// (lib/vhost/virtio_net.c: reserve_avail_buf_split for every packet of
// the burst, then the copies, then one flush of the shadow used ring): it
// pops and checks the chains for frames[i:] and records in r.steps what
// each frame and chain gets, touching neither the frames' destination
// bytes nor the used ring, and counting nothing (phase 2 counts, so that a
// rewind after a tail fault counts nothing twice). Each chain's
// descriptors are read once, by the walk into q's chain, and a buffer is
// taken only as the host bytes the walk checked, sliced again through the
// queue's region memo (Queue.Slice: the same bounds checks).
//
// It stops at the end of the frames, after rxBurst steps, when the ring
// has no chain (stop), on a fault (stop), or at a frame that does not fit
// its chain's first buffer (slow: the chain stays popped, r.slow, for
// rxOne or rxMerged; frame r.next).
func (d *Device) rxReserve(r *rxQueue, frames []Frame, i int, mrg bool, guest uint64) (stop, slow bool) {
	q := r.q
	r.slow = nil
	n := 0 // steps recorded
	popped := uint16(0)
	var held *virtio.Chain // popped and good, no frame in it yet
	heldPos := uint16(0)
	j := i
	defer func() {
		r.nSteps, r.popped, r.next = n, popped, j
	}()
	// Steps are written field by field (no composite literal: a 48-byte
	// zero-and-copy per frame showed in the profile).
	for ; j < len(frames) && n < len(r.steps); j++ {
		f := &frames[j]
		if f.Len() > MaxFrameLen {
			r.steps[n].kind, r.steps[n].fi = stepOversize, int32(j)
			n++
			continue
		}
		if !rxOffloadOK(f.Off, guest) {
			r.steps[n].kind, r.steps[n].fi = stepOffload, int32(j)
			n++
			continue
		}
		if held == nil {
			c, err := q.Pop()
			if c == nil {
				if err != nil {
					d.fault(&r.vq, err)
				}
				return true, false
			}
			if err == nil && len(c.Readable()) != 0 {
				err = errRxReadable
			}
			if err == nil && c.WritableLen() < HdrLen {
				err = errRxSmall
			}
			if err != nil {
				// Used empty and counted; the frame goes with it (as
				// the one-at-a-time path always did).
				s := &r.steps[n]
				s.kind, s.fi, s.head, s.pos = stepBadChain, int32(j), c.Head, popped
				r.errs[n] = err
				n++
				popped++
				continue
			}
			held, heldPos = c, popped
			popped++
		}
		need := uint64(HdrLen + f.Len())
		if held.WritableLen() < need {
			if mrg {
				r.slow = held // across chains
				return false, true
			}
			// Keep the buffer for a frame that fits.
			s := &r.steps[n]
			s.kind, s.fi, s.gpa = stepTooBig, int32(j), held.WritableLen()
			n++
			continue
		}
		w := held.Writable()
		if uint64(w[0].Len) < need {
			r.slow = held // across the chain's buffers
			return false, true
		}
		b, err := q.Slice(w[0].Addr, need)
		if err != nil {
			r.slow = held // across memory regions
			return false, true
		}
		s := &r.steps[n]
		s.kind, s.fi, s.b, s.gpa, s.head, s.pos = stepWrite, int32(j), b, w[0].Addr, held.Head, heldPos
		n++
		held = nil
	}
	if held != nil {
		q.Rewind(1) // no frame for it in this burst
		popped--
	}
	return false, false
}

// rxCommit is phases 2 and 3 of the burst rxReserve recorded: it counts
// the drops, writes every frame into its buffer in one tight loop (the
// stores into the guest's lines, one frame after the other, without the
// ring work between them), then adds the used entries in one go (they
// become visible at the flush, with one used index update). Frames
// written move to the front of frames (accepted), in order.
//
// A frame whose tail faults (its sender's memory vanished: the sender's
// fault, not this queue's) is counted and its chain given back with every
// chain popped after it (Rewind); the steps behind it are forgotten,
// uncounted, and the burst resumes at the frame after it (rewound, next).
// Otherwise next is where rxReserve stopped.
func (d *Device) rxCommit(r *rxQueue, frames []Frame, guest uint64, accepted *int, bytes *uint64) (next int, rewound bool) {
	q := r.q
	mem := q.Memory()
	steps := r.steps[:r.nSteps]
	next = r.next
	for k := range steps {
		s := &steps[k]
		switch s.kind {
		case stepOversize:
			d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", errOversize)
		case stepOffload:
			d.drop(&r.vq, d.stats.rxOffload.Add(1), "rx frame", errRxNoOffload)
		case stepTooBig:
			need := uint64(HdrLen + frames[s.fi].Len())
			d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", &virtio.ChainLenError{Len: need, Max: s.gpa})
		case stepBadChain:
			d.drop(&r.vq, d.stats.rxBadChain.Add(1), "rx chain", r.errs[k])
			r.errs[k] = nil
		case stepWrite:
			f := &frames[s.fi]
			h := rxHeader(f, guest)
			b := s.b
			putHdr(b[:HdrLen], &h)
			copy(b[HdrLen:], f.Data)
			if f.Tail != nil && !copyTail(b[HdrLen+len(f.Data):], f.Tail) {
				q.Rewind(r.popped - s.pos)
				d.drop(&r.vq, d.stats.rxSourceFault.Add(1), "rx frame", errRxSource)
				steps, next, rewound = steps[:k], int(s.fi)+1, true
				goto used
			}
			mem.MarkDirty(s.gpa, uint64(len(b)))
			*bytes += uint64(f.Len())
			if fi := int(s.fi); *accepted != fi { // written ones first, in order
				frames[*accepted], frames[fi] = frames[fi], frames[*accepted]
			}
			*accepted++
		}
	}
used:
	for k := range steps {
		switch s := &steps[k]; s.kind {
		case stepWrite:
			_ = q.AddUsed(s.head, uint32(len(s.b)))
		case stepBadChain:
			_ = q.AddUsed(s.head, 0)
		}
	}
	return next, rewound
}

// pop pops an RX chain and checks it: only writable buffers (§2.7.4.2: RX
// buffers are device-writable). Bad chains are returned empty and counted.
func (d *Device) rxPop(r *rxQueue) (*virtio.Chain, rxResult) {
	c, err := r.q.Pop()
	if c == nil {
		if err != nil {
			d.fault(&r.vq, err)
			return nil, rxFault
		}
		return nil, rxNoBuffer
	}
	if err == nil && len(c.Readable()) != 0 {
		err = errRxReadable
	}
	if err == nil && c.WritableLen() < HdrLen {
		err = errRxSmall
	}
	if err != nil {
		d.drop(&r.vq, d.stats.rxBadChain.Add(1), "rx chain", err)
		_ = r.q.AddUsed(c.Head, 0)
		return nil, rxDropped
	}
	return c, rxDone
}

// rxOne writes header and frame into chain c, just popped.
func (d *Device) rxOne(r *rxQueue, c *virtio.Chain, h frame.Offload, data, tail []byte) rxResult {
	need := uint64(HdrLen + len(data) + len(tail))
	if c.WritableLen() < need {
		// Keep the buffer for a frame that fits.
		r.q.Rewind(1)
		d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", &virtio.ChainLenError{Len: need, Max: c.WritableLen()})
		return rxDropped
	}
	switch rxFast(r, c, &h, data, tail) {
	case fastDone:
		return rxDone
	case fastSource:
		return d.rxSourceFault(r, 1)
	}
	mem := r.q.Memory()
	putHdr(r.hdr[:], &h)
	if _, err := c.WriteAt(mem, r.hdr[:], 0); err != nil {
		return d.rxBad(r, c.Head, 0, err)
	}
	if err := writeFrame(c, mem, HdrLen, data, tail, 0, len(data)+len(tail)); err != nil {
		if err == errRxSource {
			return d.rxSourceFault(r, 1)
		}
		return d.rxBad(r, c.Head, 0, err)
	}
	_ = r.q.AddUsed(c.Head, uint32(need))
	return rxDone
}

// writeFrame writes bytes [pos, pos+n) of the frame data+tail at offset
// off of c's writable buffers. A fault reading tail (its sender's memory
// vanished) is errRxSource: the sender's, not this queue's. The caller's
// fault guard is on (ReceiveOn).
func writeFrame(c *virtio.Chain, mem *virtio.Memory, off uint64, data, tail []byte, pos, n int) (err error) {
	if pos < len(data) {
		k := min(n, len(data)-pos)
		if _, err := c.WriteAt(mem, data[pos:pos+k], off); err != nil {
			return err
		}
		off, pos, n = off+uint64(k), pos+k, n-k
	}
	if n == 0 {
		return nil
	}
	t := tail[pos-len(data) : pos-len(data)+n]
	defer func() {
		if r := recover(); r != nil {
			if !frame.TailFault(r, t) {
				panic(r)
			}
			err = errRxSource
		}
	}()
	_, err = c.WriteAt(mem, t, off)
	return err
}

// copyTail is frame.ReadTail under the fault guard ReceiveOn already set.
func copyTail(dst, tail []byte) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if !frame.TailFault(r, tail) {
				panic(r)
			}
			ok = false
		}
	}()
	copy(dst, tail)
	return true
}

// rxSourceFault gives back the held chains just popped for a frame whose
// tail could not be read (its sender's memory vanished under the copy:
// the sender's fault, not this queue's) and counts the frame.
func (d *Device) rxSourceFault(r *rxQueue, held int) rxResult {
	r.q.Rewind(uint16(held))
	d.drop(&r.vq, d.stats.rxSourceFault.Add(1), "rx frame", errRxSource)
	return rxDropped
}

// rxFast's outcomes.
const (
	fastNo     = iota // nothing was done: take the general path
	fastDone          // written and used
	fastSource        // the frame's tail faulted: nothing used, drop it
)

// rxFast is the common case of rxOne and rxMerged: header and frame fit
// the chain's first writable buffer. They are written with one bounds
// check (through the queue's region memo) and dirty-logged, as
// Memory.WriteParts does, and the chain is used with num_buffers 1.
func rxFast(r *rxQueue, c *virtio.Chain, h *frame.Offload, data, tail []byte) int {
	w := c.Writable()
	need := uint64(HdrLen + len(data) + len(tail))
	if len(w) == 0 || uint64(w[0].Len) < need {
		return fastNo
	}
	b, err := r.q.Slice(w[0].Addr, need)
	if err != nil {
		return fastNo // across memory regions
	}
	putHdr(b[:HdrLen], h)
	copy(b[HdrLen:], data)
	if tail != nil && !copyTail(b[HdrLen+len(data):], tail) {
		return fastSource
	}
	r.q.Memory().MarkDirty(w[0].Addr, need)
	_ = r.q.AddUsed(c.Head, uint32(need))
	return fastDone
}

// putHdr writes the header of a received frame into b (HdrLen bytes): h's
// offload fields and num_buffers 1 (rxMerged rewrites it when the frame
// takes more buffers).
func putHdr(b []byte, h *frame.Offload) {
	h.Encode(b)
	binary.LittleEndian.PutUint16(b[frame.VnetHdrLen:HdrLen], 1)
}

// rxBad returns chain head and the nHeld chains held for the current frame
// with length 0, and counts a bad chain.
func (d *Device) rxBad(r *rxQueue, head uint16, nHeld int, err error) rxResult {
	d.drop(&r.vq, d.stats.rxBadChain.Add(1), "rx chain", err)
	for i := 0; i < nHeld; i++ {
		_ = r.q.AddUsed(r.heads[i], 0)
	}
	_ = r.q.AddUsed(head, 0)
	return rxDropped
}

// rxMerged spreads header and frame over as many chains as needed
// (§5.1.6.4.2 "Processing of Incoming Packets", mergeable buffers): the
// header goes at the start of the first, num_buffers is written last. If the
// buffers run out the chains are given back (Rewind) and the frame dropped.
//
// first, if not nil, is the first chain, just popped (and checked as
// rxPop does).
func (d *Device) rxMerged(r *rxQueue, h frame.Offload, data, tail []byte, first *virtio.Chain) rxResult {
	mem := r.q.Memory()
	var numBufAt [2]uint64 // guest addresses of num_buffers' two bytes
	nbuf := 0
	pos, total := 0, len(data)+len(tail) // bytes of the frame written, of all
	for nbuf == 0 || pos < total {
		if nbuf == len(r.heads) {
			return d.rxBad(r, r.heads[nbuf-1], nbuf-1, errRxTooMany)
		}
		c, res := first, rxDone
		if nbuf > 0 || c == nil {
			c, res = d.rxPop(r)
		}
		if c == nil {
			switch res {
			case rxNoBuffer:
				r.q.Rewind(uint16(nbuf))
			case rxDropped: // a bad chain: give back the ones held too
				for i := 0; i < nbuf; i++ {
					_ = r.q.AddUsed(r.heads[i], 0)
				}
			}
			return res
		}
		off := uint64(0)
		if nbuf == 0 {
			switch rxFast(r, c, &h, data, tail) {
			case fastDone:
				return rxDone
			case fastSource:
				return d.rxSourceFault(r, 1)
			}
		}
		if nbuf == 0 {
			putHdr(r.hdr[:], &h)
			if _, err := c.WriteAt(mem, r.hdr[:], 0); err != nil {
				return d.rxBad(r, c.Head, 0, err)
			}
			numBufAt[0], numBufAt[1] = writableAddr(c, 10), writableAddr(c, 11)
			off = HdrLen
		}
		n := min(c.WritableLen()-off, uint64(total-pos))
		if n == 0 && nbuf > 0 {
			return d.rxBad(r, c.Head, nbuf, errRxSmall)
		}
		if err := writeFrame(c, mem, off, data, tail, pos, int(n)); err != nil {
			if err == errRxSource {
				return d.rxSourceFault(r, nbuf+1)
			}
			return d.rxBad(r, c.Head, nbuf, err)
		}
		pos += int(n)
		r.heads[nbuf], r.lens[nbuf] = c.Head, uint32(off+n)
		nbuf++
	}
	if nbuf > 1 {
		binary.LittleEndian.PutUint16(r.two[:], uint16(nbuf))
		_ = mem.Write(numBufAt[0], r.two[:1])
		_ = mem.Write(numBufAt[1], r.two[1:])
	}
	for i := 0; i < nbuf; i++ {
		_ = r.q.AddUsed(r.heads[i], r.lens[i])
	}
	return rxDone
}

// writableAddr returns the guest address of writable byte off of c (which
// must have that many).
func writableAddr(c *virtio.Chain, off uint64) uint64 {
	for _, desc := range c.Writable() {
		if off < uint64(desc.Len) {
			return desc.Addr + off
		}
		off -= uint64(desc.Len)
	}
	return 0
}
