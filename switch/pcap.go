package vswitch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// Classic libpcap file format (draft-ietf-opsawg-pcap, "PCAP Capture File
// Format", §4 file header, §5 packet record), written little-endian.
const (
	pcapMagicMicro  = 0xa1b2c3d4
	pcapMagicNano   = 0xa1b23c4d
	linkTypeEther   = 1 // LINKTYPE_ETHERNET
	defaultSnapLen  = 262144
	pcapRecordHdLen = 16
)

// PcapOptions configures a PcapWriter.
type PcapOptions struct {
	Nanosecond bool // nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds
	SnapLen    int  // bytes kept per frame; 0 means 262144
}

// PcapWriter writes frames to a classic pcap file with LINKTYPE_ETHERNET.
// It is a MirrorSink; it is safe for concurrent use. Timestamps are the
// switch Clock's nanoseconds, read as Unix time (RealClock gives Unix time).
type PcapWriter struct {
	mu      sync.Mutex
	w       *bufio.Writer
	nano    bool
	snapLen int
	hdr     [pcapRecordHdLen]byte
	err     error
}

// NewPcapWriter writes the file header to w and returns the writer.
func NewPcapWriter(w io.Writer, o PcapOptions) (*PcapWriter, error) {
	if o.SnapLen == 0 {
		o.SnapLen = defaultSnapLen
	}
	if o.SnapLen < 0 {
		return nil, fmt.Errorf("pcap: snaplen %d", o.SnapLen)
	}
	p := &PcapWriter{w: bufio.NewWriterSize(w, 64<<10), nano: o.Nanosecond, snapLen: o.SnapLen}
	var h [24]byte
	magic := uint32(pcapMagicMicro)
	if o.Nanosecond {
		magic = pcapMagicNano
	}
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	// thiszone and sigfigs stay 0.
	binary.LittleEndian.PutUint32(h[16:], uint32(o.SnapLen))
	binary.LittleEndian.PutUint32(h[20:], linkTypeEther)
	if _, err := p.w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap: write file header: %w", err)
	}
	return p, nil
}

// WriteFrame appends one record for data captured at ts (Unix ns).
func (p *PcapWriter) WriteFrame(ts int64, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writeLocked(ts, data)
}

func (p *PcapWriter) writeLocked(ts int64, data []byte) error {
	if p.err != nil {
		return p.err
	}
	incl := min(len(data), p.snapLen)
	sec, frac := ts/1e9, ts%1e9
	if !p.nano {
		frac /= 1e3
	}
	binary.LittleEndian.PutUint32(p.hdr[0:], uint32(sec))
	binary.LittleEndian.PutUint32(p.hdr[4:], uint32(frac))
	binary.LittleEndian.PutUint32(p.hdr[8:], uint32(incl))
	binary.LittleEndian.PutUint32(p.hdr[12:], uint32(len(data)))
	if _, err := p.w.Write(p.hdr[:]); err != nil {
		p.err = fmt.Errorf("pcap: write record header: %w", err)
		return p.err
	}
	if _, err := p.w.Write(data[:incl]); err != nil {
		p.err = fmt.Errorf("pcap: write record: %w", err)
	}
	return p.err
}

// Mirror implements MirrorSink: it writes every frame. Write errors are
// kept and returned by Flush.
func (p *PcapWriter) Mirror(_ string, _ Direction, ts int64, frames []Frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range frames {
		if p.writeLocked(ts, frames[i].Data) != nil {
			return
		}
	}
}

// Flush writes buffered records to the underlying writer.
func (p *PcapWriter) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if err := p.w.Flush(); err != nil {
		p.err = fmt.Errorf("pcap: flush: %w", err)
	}
	return p.err
}

var _ MirrorSink = (*PcapWriter)(nil)
