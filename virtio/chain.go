package virtio

// Descriptor flags, virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table".
const (
	DescFNext     = 1 // the chain continues in Next
	DescFWrite    = 2 // device-writable (otherwise device-readable)
	DescFIndirect = 4 // the buffer is an indirect descriptor table
)

// DescSize is the size of one descriptor in the table (§2.7.5):
// le64 addr, le32 len, le16 flags, le16 next.
const DescSize = 16

// Desc is one buffer of a chain, decoded and validated: [Addr, Addr+Len) is
// guest memory (it may span adjacent regions).
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
}

// Writable reports whether the descriptor is device-writable.
func (d Desc) Writable() bool { return d.Flags&DescFWrite != 0 }

// Chain is a descriptor chain popped from a Queue: the driver-readable
// buffers followed by the device-writable ones (§2.7.4.2), with indirect
// tables flattened. It belongs to the Queue and is valid until the next Pop
// (or PopInto with it); it holds no allocation per chain.
type Chain struct {
	// Head is the index of the chain's first descriptor, to be returned
	// with Queue.AddUsed.
	Head     uint16
	descs    []Desc
	nRead    int
	readLen  uint64
	writeLen uint64
	// first is the guest memory of descs[0] as the walk found it, when
	// it lies in one region (else nil): the device's first use of the
	// chain needs no second lookup (First).
	first []byte
	// The walk's errors for a bad chain, returned as pointers to these
	// (valid until the chain's next Pop): a guest's stream of bad chains
	// allocates nothing.
	addrErr AddrError
	lenErr  ChainLenError
}

// badAddr returns the chain's *AddrError for [gpa, gpa+n).
func (c *Chain) badAddr(gpa, n uint64) error {
	c.addrErr = AddrError{GPA: gpa, Len: n}
	return &c.addrErr
}

// tooLong returns the chain's *ChainLenError.
func (c *Chain) tooLong(n, max uint64) error {
	c.lenErr = ChainLenError{Len: n, Max: max}
	return &c.lenErr
}

// NewChain returns a chain that can hold maxDescs descriptors, for
// Queue.PopInto.
func NewChain(maxDescs int) *Chain { return &Chain{descs: make([]Desc, 0, maxDescs)} }

func (c *Chain) reset(head uint16) {
	c.Head = head
	c.descs = c.descs[:0]
	c.nRead = 0
	c.readLen = 0
	c.writeLen = 0
	c.first = nil
}

// one makes c the chain of the one descriptor d at head, whose bytes,
// checked against guest memory, are b (what walk makes of such a chain).
func (c *Chain) one(head uint16, d Desc, b []byte) {
	c.Head, c.first = head, b
	c.descs = append(c.descs[:0], d)
	if d.Flags&DescFWrite != 0 {
		c.nRead, c.readLen, c.writeLen = 0, 0, uint64(d.Len)
	} else {
		c.nRead, c.readLen, c.writeLen = 1, uint64(d.Len), 0
	}
}

// First returns the guest memory of the chain's first buffer, as the
// walk that popped it checked it (the same bytes Queue.Slice gives for
// it), or nil when that buffer spans memory regions. Like Queue.Slice it
// is for the queue's owner, until the queue's memory changes.
func (c *Chain) First() []byte { return c.first }

// Readable returns the driver-readable descriptors.
func (c *Chain) Readable() []Desc { return c.descs[:c.nRead] }

// Writable returns the device-writable descriptors.
func (c *Chain) Writable() []Desc { return c.descs[c.nRead:] }

// ReadableLen is the total length of the readable descriptors.
func (c *Chain) ReadableLen() uint64 { return c.readLen }

// WritableLen is the total length of the writable descriptors.
func (c *Chain) WritableLen() uint64 { return c.writeLen }

// Len is the number of descriptors in the chain.
func (c *Chain) Len() int { return len(c.descs) }

// ReadAt copies the readable bytes at offset off into dst and returns the
// count copied (short only at the end of the readable part).
func (c *Chain) ReadAt(m *Memory, dst []byte, off uint64) (int, error) {
	return gather(m, c.Readable(), dst, off)
}

// WriteAt copies src into the writable bytes at offset off and returns the
// count copied (short only at the end of the writable part).
func (c *Chain) WriteAt(m *Memory, src []byte, off uint64) (int, error) {
	done := 0
	for _, d := range c.Writable() {
		if len(src) == 0 {
			break
		}
		l := uint64(d.Len)
		if off >= l {
			off -= l
			continue
		}
		n := min(l-off, uint64(len(src)))
		if err := m.Write(d.Addr+off, src[:n]); err != nil {
			return done, err
		}
		src = src[n:]
		done += int(n)
		off = 0
	}
	return done, nil
}

func gather(m *Memory, ds []Desc, dst []byte, off uint64) (int, error) {
	done := 0
	for _, d := range ds {
		if len(dst) == 0 {
			break
		}
		l := uint64(d.Len)
		if off >= l {
			off -= l
			continue
		}
		n := min(l-off, uint64(len(dst)))
		if err := m.Read(d.Addr+off, dst[:n]); err != nil {
			return done, err
		}
		dst = dst[n:]
		done += int(n)
		off = 0
	}
	return done, nil
}
