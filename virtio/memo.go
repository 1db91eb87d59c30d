package virtio

// regionMemo remembers the region the last lookup of one user (a Queue)
// found, so that the next lookup in the same region, nearly all of them
// (a ring's buffers sit in one or a few regions), is a subtraction and two
// compares instead of Memory.find's binary search (vhost/BENCH_NOTES.md,
// issue 22: the lookups were ~10 % of the dataplane's time). DPDK's vhost
// library scans its few regions for each buffer instead
// (rte_vhost_va_from_guest_pa).
//
// A Memory is shared by the queues of several goroutines, so the memo
// lives with its one user, never in the Memory. It holds the Memory it was
// filled from and is used only while that is still the user's Memory: a
// new memory table (vhost-user SET_MEM_TABLE, a VMM remap) is a new
// *Memory, and the held pointer keeps the old one alive, so a new one
// cannot reuse its address. The memo is therefore never consulted for a
// region of a previous table, whose mapping may be gone.
//
// A hit gives exactly what Memory.Slice gives: the range must lie wholly
// inside the remembered region, checked without overflow (off < len, then
// n <= len-off; a region never wraps the address space, NewMemory).
// Anything else asks the Memory.
type regionMemo struct {
	mem  *Memory
	gpa  uint64
	data []byte
}

// lookup returns the bytes of [gpa, gpa+n) from the memo, if they lie in
// its region of m.
func (c *regionMemo) lookup(m *Memory, gpa, n uint64) ([]byte, bool) {
	off := gpa - c.gpa
	if c.mem != m || off >= uint64(len(c.data)) || n > uint64(len(c.data))-off {
		return nil, false
	}
	return c.data[off : off+n : off+n], true
}

// fill remembers the region of m holding gpa, if any.
func (c *regionMemo) fill(m *Memory, gpa uint64) {
	if m == nil {
		return
	}
	if i := m.find(gpa); i >= 0 {
		r := &m.regions[i]
		c.mem, c.gpa, c.data = m, r.GPA, r.Data
	}
}

// slice is m.Slice(gpa, n) through the memo, without an error value
// (ok false: the range is not in one region of m).
func (c *regionMemo) slice(m *Memory, gpa, n uint64) ([]byte, bool) {
	if b, ok := c.lookup(m, gpa, n); ok {
		return b, true
	}
	b, ok := m.slice(gpa, n)
	if ok {
		c.fill(m, gpa)
	}
	return b, ok
}

// check is m.Check(gpa, n) through the memo, without an error value. It
// also returns the range's bytes when they lie in one region
// (Memory.Slice's result), else nil.
func (c *regionMemo) check(m *Memory, gpa, n uint64) ([]byte, bool) {
	if b, ok := c.lookup(m, gpa, n); ok {
		return b, true
	}
	if !m.covers(gpa, n) {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}
	c.fill(m, gpa)
	b, _ := c.lookup(m, gpa, n)
	return b, true
}

// reset forgets the region (and the Memory it came from).
func (c *regionMemo) reset() { *c = regionMemo{} }

// Slice is Memory().Slice(gpa, n), the same checks and the same result,
// through the queue's memo of the region it last used (the one its last
// descriptor was found in, as a rule). For the device's own use of the
// buffers of chains it popped, on the goroutine that owns the queue.
func (q *Queue) Slice(gpa, n uint64) ([]byte, error) {
	if b, ok := q.memo.slice(q.mem, gpa, n); ok {
		return b, nil
	}
	return nil, &AddrError{GPA: gpa, Len: n}
}
