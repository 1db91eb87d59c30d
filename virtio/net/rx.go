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
	errRxOversize  = errors.New("frame larger than the receive buffer (buffers without VIRTIO_NET_F_MRG_RXBUF)")
	errRxDescs     = errors.New("frame's receive buffers take more than 1024 descriptors (UIO_MAXIOV, as Linux's vhost-net)")
)

// rxMaxDescs is the most descriptors one received frame's chains may
// take together, Linux vhost-net's UIO_MAXIOV: a driver's chains of
// empty or tiny buffers cannot make one frame walk the whole ring (each
// chain up to the queue size in descriptors). Past it the chains are
// used with length 0 (the driver must make them available again) and the
// frame is dropped as a bad chain.
const rxMaxDescs = 1024

// rxShort remembers the buffers a frame last did not fit in, the
// chains from the available index from on: how many there were (chains;
// 0 without mergeable buffers, where a frame takes only the chain at
// from) and their bytes. Until the device takes a chain or the driver
// makes more available, a frame needing more bytes is dropped (counted
// with the frames that found no buffer) without walking them again: a
// driver cannot make every frame sent to it walk the same chains (up to
// rxMaxDescs descriptors a frame, and its sender's worker pays).
type rxShort struct {
	valid  bool
	setup  uint32 // vq.setup when taken
	from   uint16
	chains uint16
	bytes  uint64
}

// remember records that the chains from the available index from on (n
// of them with mergeable buffers, else 0) hold bytes, too few for a
// frame.
func (r *rxQueue) remember(from, n uint16, bytes uint64) {
	r.short = rxShort{valid: true, setup: r.setup, from: from, chains: n, bytes: bytes}
}

// tooShort reports whether a frame needing need bytes (header included)
// is sure not to fit the buffers r.short remembers: the device has taken
// no chain since, the driver has made none available (mergeable
// buffers; one read of its index) and need is more than they hold. The
// caller checks r.short.valid first (the common case costs one test).
func (r *rxQueue) tooShort(need uint64) bool {
	s := &r.short
	if s.setup != r.setup || r.q.NextAvail() != s.from {
		s.valid = false
		return false
	}
	if need <= s.bytes {
		return false
	}
	if s.chains > 0 {
		if n, err := r.q.Pending(); err != nil || n != s.chains {
			s.valid = false // more to walk, or a broken ring for Pop to report
			return false
		}
	}
	return true
}

type rxQueue struct {
	vq
	hdr   [HdrLen]byte
	two   [2]byte
	heads []uint16
	lens  []uint32
	burst rxBurstChains
	short rxShort
}

// rxBurstChains holds a burst's chains between rxBurst's passes.
type rxBurstChains struct {
	heads [maxBurst]uint16
	lens  [maxBurst]uint32
	addrs [maxBurst]uint64
	hdrs  [maxBurst]frame.Offload
	bufs  [maxBurst][]byte
	// left is the chain popped for the frame the burst stopped at, for
	// the loop to check (with Pop's error, leftErr) and take.
	left    *virtio.Chain
	leftErr error
}

// maxBurst is the most frames rxBurst writes at once.
const maxBurst = 64

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

// ReceiveQueue is Receive steered by the sender's queue q rather than by
// a hash of each frame: to pair q modulo the active pairs (the receive
// side of vswitch.QueuePort: a sender's queue q writes one receive queue,
// so the senders' workers of different queues never share one).
func (d *Device) ReceiveQueue(q int, frames []Frame) int {
	active := int(d.activePairs.Load())
	if active <= 1 || q < 0 {
		return d.Receive(frames)
	}
	return d.ReceiveOn(q%active, frames)
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

// warmStep: ReceiveOn warms the receive ring warmStep chains at a time,
// up to 2*warmStep ahead.
const warmStep = 8

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
	features := d.features.Load()
	guest := d.rxOffloads.Load()
	mrg := has(features, FMrgRxbuf)
	// The receive buffers' lines, a window ahead of the frames written
	// (Queue.Warm): 16 chains now, 8 more every 8 frames.
	q.Warm(0, min(len(frames), 2*warmStep))
	var bytes uint64
	i := 0
	if mrg && !d.noBurst {
		var stop bool
		if accepted, i, bytes, stop = d.rxBurst(r, frames, guest); stop {
			goto out
		}
	}
loop:
	for ; i < len(frames); i++ {
		if i%warmStep == 0 && i > 0 && i+warmStep < len(frames) {
			q.Warm(warmStep, min(warmStep, len(frames)-i-warmStep))
		}
		f := &frames[i]
		if f.Len() > MaxFrameLen {
			d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", errOversize)
			continue
		}
		h, ok := rxHeader(f.Off, guest)
		if !ok {
			d.drop(&r.vq, d.stats.rxOffload.Add(1), "rx frame", errRxNoOffload)
			continue
		}
		var res rxResult
		if mrg {
			// The common case here: the frame fits the first chain's
			// first buffer (rxFast); rxMerged spreads it over more.
			var c *virtio.Chain
			if b := &r.burst; b.left != nil {
				// The chain rxBurst popped for this frame and left.
				c, res = d.rxCheck(r, b.left, b.leftErr, nil)
				b.left, b.leftErr = nil, nil
			} else if r.short.valid && r.tooShort(uint64(HdrLen+f.Len())) {
				res = rxNoBuffer
			} else {
				c, res = d.rxPop(r)
			}
			if c != nil {
				switch rxFast(r, c, &h, f.Data, f.Tail) {
				case fastDone:
					res = rxDone
				case fastSource:
					res = d.rxSourceFault(r, 1)
				default:
					res = d.rxMerged(r, h, f.Data, f.Tail, c)
				}
			}
		} else {
			res = d.rxOne(r, h, f.Data, f.Tail)
		}
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
	}
out:
	if i < len(frames) {
		d.stats.rxNoBuffer.Add(uint64(len(frames) - i))
	}
	d.stats.rxPackets.Add(uint64(accepted))
	d.stats.rxBytes.Add(bytes)
	d.flush(&r.vq)
	return accepted
}

// rxHeader returns the offloads a receiving guest is told of for a frame
// with off, of those it negotiated (guest), or false when it negotiated
// too few to take the frame. A frame without offloads: every guest takes
// it, the header stays zero.
func rxHeader(off frame.Offload, guest uint64) (h frame.Offload, ok bool) {
	if off.None() {
		return h, true
	}
	if !rxOffloadOK(off, guest) {
		return h, false
	}
	if has(guest, FGuestCsum) {
		h.Flags = off.Flags & (frame.NeedsCsum | frame.DataValid)
		h.CsumStart, h.CsumOffset = off.CsumStart, off.CsumOffset
	}
	if off.GSOType != frame.GSONone {
		h.GSOType, h.GSOSize, h.HdrLen = off.GSOType, off.GSOSize, off.HdrLen
	}
	return h, true
}

// rxBurst writes the leading frames of a batch that each fit one
// receive buffer whole (no tail in a sender's memory, an offload the guest
// takes, a chain whose first buffer holds header and frame), in three
// passes: it pops and checks a chain for each frame, then writes every
// header and frame, then stages every used entry. The stores into the
// driver's memory, its buffers' lines and its used ring's, thus come
// together, where the one-frame loop puts its own (chain, counters,
// frame order) between them: stores leave the core in program order, and
// a store to a line the driver's core holds waits for that line, every
// store behind it too. With the driver on a core that is far (another
// die: vhost/BENCH_NOTES.md, session 20) the one-frame loop waits for a
// line about every frame; together the waits overlap (DPDK's vhost
// enqueue copies a burst's small frames together after reserving their
// buffers for the same reason). What it writes and stages is what the
// loop's rxFast would for the same frames and chains, in the same order.
//
// Each chain's descriptor is read once (Pop) and decided on from the
// chain's copy. It returns how many frames were written (frames[:n], in
// their order), the index the loop goes on from, their bytes, and stop
// when the ring ran out or broke (the loop's rxNoBuffer and rxFault:
// frames[next:] are not written). A chain it popped for frames[next] and
// did not take is left in r.burst.left for the loop.
func (d *Device) rxBurst(r *rxQueue, frames []Frame, guest uint64) (n, next int, bytes uint64, stop bool) {
	q, b := r.q, &r.burst
	b.left, b.leftErr = nil, nil // a fault may have cut the last call short
	k := 0
	for ; k < min(len(frames), maxBurst); k++ {
		f := &frames[k]
		if f.Tail != nil || len(f.Data) > MaxFrameLen {
			break // the loop's: a tail to copy (it may fault), a drop
		}
		h, ok := rxHeader(f.Off, guest)
		if !ok {
			break // the loop counts the drop
		}
		if k%warmStep == 0 && k > 0 && k+warmStep < len(frames) {
			q.Warm(warmStep, min(warmStep, len(frames)-k-warmStep))
		}
		need := uint64(HdrLen + len(f.Data))
		if r.short.valid && r.tooShort(need) {
			stop = true // the loop's rxNoBuffer
			break
		}
		c, err := q.Pop()
		if c == nil {
			d.rxCheck(r, nil, err, nil) // a broken ring (counted) or none left
			stop = true
			break
		}
		buf := c.First() // the first buffer's bytes
		if w := c.Writable(); err != nil || len(c.Readable()) != 0 || len(w) == 0 ||
			uint64(w[0].Len) < need || uint64(len(buf)) < need {
			// A bad chain, a frame over more buffers, a buffer across
			// regions: the loop takes the chain (rxCheck), for this
			// frame, so that its used entry comes after the burst's.
			b.left, b.leftErr = c, err
			break
		}
		b.heads[n], b.lens[n], b.addrs[n], b.hdrs[n] = c.Head, uint32(need), c.Writable()[0].Addr, h
		b.bufs[n] = buf[:need:need]
		n++
	}
	for j, buf := range b.bufs[:n] {
		putHdr(buf[:HdrLen], &b.hdrs[j])
		copy(buf[HdrLen:], frames[j].Data)
		bytes += uint64(len(frames[j].Data))
	}
	mem := q.Memory()
	for j := range n {
		mem.MarkDirty(b.addrs[j], uint64(b.lens[j]))
		_ = q.AddUsed(b.heads[j], b.lens[j]) // cannot fail: popped from this ready queue
		b.bufs[j] = nil
	}
	return n, k, bytes, stop
}

// pop pops an RX chain and checks it: only writable buffers (§2.7.4.2: RX
// buffers are device-writable). Bad chains are returned empty and counted.
func (d *Device) rxPop(r *rxQueue) (*virtio.Chain, rxResult) {
	c, err := r.q.Pop()
	return d.rxCheck(r, c, err, nil)
}

// rxCheck is rxPop's check of what Pop returned. A bad chain is used
// (length 0) after held, the chains held for the current frame, which go
// back with it, each with length 0: chains are used in the order they were
// made available (VIRTIO_F_IN_ORDER).
func (d *Device) rxCheck(r *rxQueue, c *virtio.Chain, err error, held []uint16) (*virtio.Chain, rxResult) {
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
		for _, h := range held {
			_ = r.q.AddUsed(h, 0)
		}
		_ = r.q.AddUsed(c.Head, 0)
		return nil, rxDropped
	}
	return c, rxDone
}

// rxOne writes header and frame into one chain.
func (d *Device) rxOne(r *rxQueue, h frame.Offload, data, tail []byte) rxResult {
	need := uint64(HdrLen + len(data) + len(tail))
	if r.short.valid && r.tooShort(need) {
		d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", errRxOversize)
		return rxDropped
	}
	c, res := d.rxPop(r)
	if c == nil {
		return res
	}
	if len(c.Writable()) > rxMaxDescs {
		return d.rxBad(r, c.Head, 0, errRxDescs)
	}
	if c.WritableLen() < need {
		// Keep the buffer for a frame that fits, and remember it.
		r.q.Rewind(1)
		r.remember(r.q.NextAvail(), 0, c.WritableLen())
		d.drop(&r.vq, d.stats.rxOversize.Add(1), "rx frame", errRxOversize)
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
// check (through the queue's region memo, Queue.Slice) and dirty-logged,
// as Memory.WriteParts does, and the chain is used with num_buffers 1.
func rxFast(r *rxQueue, c *virtio.Chain, h *frame.Offload, data, tail []byte) int {
	w := c.Writable()
	need := uint64(HdrLen + len(data) + len(tail))
	if len(w) == 0 || uint64(w[0].Len) < need || len(c.Readable()) != 0 {
		return fastNo
	}
	b := c.First() // w[0]'s bytes, from the walk's lookup
	if uint64(len(b)) < need {
		return fastNo // across memory regions (nil)
	}
	b = b[:need:need]
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
// c0 is the first chain, popped by the caller (rxPop) and found too small
// for rxFast.
func (d *Device) rxMerged(r *rxQueue, h frame.Offload, data, tail []byte, c0 *virtio.Chain) rxResult {
	mem := r.q.Memory()
	var numBufAt [2]uint64 // guest addresses of num_buffers' two bytes
	nbuf, descs := 0, 0
	pos, total := 0, len(data)+len(tail) // bytes of the frame written, of all
	for nbuf == 0 || pos < total {
		if nbuf == len(r.heads) {
			return d.rxBad(r, r.heads[nbuf-1], nbuf-1, errRxTooMany)
		}
		c := c0
		if nbuf > 0 {
			var res rxResult
			cc, err := r.q.Pop()
			// A bad chain: the ones held go back too, before it.
			if c, res = d.rxCheck(r, cc, err, r.heads[:nbuf]); c == nil {
				if res == rxNoBuffer {
					r.q.Rewind(uint16(nbuf))
					r.remember(r.q.NextAvail(), uint16(nbuf), uint64(HdrLen+pos))
				}
				return res
			}
		}
		if descs += len(c.Writable()); descs > rxMaxDescs {
			return d.rxBad(r, c.Head, nbuf, errRxDescs)
		}
		off := uint64(0)
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
