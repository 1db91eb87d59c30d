package uplink

import (
	"golang.org/x/sys/unix"

	vswitch "github.com/hvnet/hvnet/switch"
)

// rxLoop is one RX worker: it waits for ring blocks handed to user space,
// feeds their frames to the switch and gives the blocks back
// (packet_mmap.rst, "TPACKET_V3": block_status TP_STATUS_USER, then
// TP_STATUS_KERNEL). It ends when a.stop is set.
func (p *Port) rxLoop(a *attachment, r *rxRing) {
	frames := make([]vswitch.Frame, 0, p.cfg.Batch)
	pfd := []unix.PollFd{
		{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR},
		{Fd: int32(a.stopfd), Events: unix.POLLIN},
	}
	timeout := int(p.cfg.PollTimeout.Milliseconds())
	var c rxCounts
	for !a.stop.Load() {
		blk := r.ring[r.next*r.blockSize : (r.next+1)*r.blockSize]
		if loadStatus(blk, bdStatus)&unix.TP_STATUS_USER == 0 {
			if _, err := unix.Poll(pfd, timeout); err != nil && err != unix.EINTR {
				p.log.Error("poll on RX socket", "error", err)
				return
			}
			if pfd[0].Revents&unix.POLLERR != 0 {
				// The kernel reports link down / interface gone as a
				// socket error (ENETDOWN); reading it clears it.
				if e, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
					p.st.rxSockErrors.Add(1)
					p.log.Debug("RX socket error", "error", unix.Errno(e))
				}
			}
			continue
		}
		c = rxCounts{}
		var in Receiver
		if h := p.handle.Load(); h != nil {
			in = *h
		}
		walkBlock(blk, frames, in, &c)
		storeStatus(blk, bdStatus, unix.TP_STATUS_KERNEL)
		if r.next++; r.next == r.blocks {
			r.next = 0
		}
		p.st.addRX(&c)
	}
}
