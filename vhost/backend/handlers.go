package backend

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/vhostuser/proto"
	"github.com/hvnet/hvnet/virtio"
)

// handle executes one validated request. A non-nil reply is sent for the
// requests that have one (vhost-user.rst "Front-end message types").
func (s *Session) handle(m *proto.Msg) ([]byte, error) {
	p := m.Payload
	switch m.Request {
	case proto.GetFeatures:
		return proto.PutU64(s.offered), nil
	case proto.SetFeatures:
		return nil, s.setFeatures(proto.U64(p))
	case proto.SetOwner:
		s.owner = true
		return nil, nil
	case proto.ResetOwner, proto.ResetDevice:
		s.reset()
		return nil, nil
	case proto.GetProtocolFeatures:
		return proto.PutU64(OfferedProtocol), nil
	case proto.SetProtocolFeatures:
		f := proto.U64(p)
		if f&^OfferedProtocol != 0 {
			return nil, fmt.Errorf("protocol features %#x were not offered (%#x)", f, uint64(OfferedProtocol))
		}
		s.protocol = f
		return nil, nil
	case proto.GetQueueNum:
		// Queue pairs, as QEMU's vhost-user netdev compares it with its
		// queues= (pairs) and DPDK's vhost library answers (its
		// VHOST_MAX_QUEUE_PAIRS).
		return proto.PutU64(uint64(len(s.vrings) / 2)), nil
	case proto.GetMaxMemSlots:
		return proto.PutU64(MaxMemSlots), nil
	case proto.SetMemTable:
		return nil, s.setMemTable(m)
	case proto.AddMemReg:
		return nil, s.addMemReg(m)
	case proto.RemMemReg:
		return nil, s.remMemReg(proto.DecodeMemReg(p))
	case proto.SetLogBase:
		return s.setLogBase(m)
	case proto.SetLogFD:
		if s.logFD >= 0 {
			closeFD(s.logFD)
		}
		s.logFD, m.FDs = m.FDs[0], nil
		return nil, nil
	case proto.SetVringNum:
		return nil, s.setVringNum(proto.DecodeVringState(p))
	case proto.SetVringAddr:
		return nil, s.setVringAddr(proto.DecodeVringAddr(p))
	case proto.SetVringBase:
		return nil, s.setVringBase(proto.DecodeVringState(p))
	case proto.GetVringBase:
		return s.getVringBase(proto.DecodeVringState(p))
	case proto.SetVringKick, proto.SetVringCall, proto.SetVringErr:
		return nil, s.setVringFD(m)
	case proto.SetVringEnable:
		return nil, s.setVringEnable(proto.DecodeVringState(p))
	case proto.NetSetMTU:
		mtu := proto.U64(p)
		if mtu < 68 || mtu > 65535 {
			return nil, fmt.Errorf("MTU %d out of range 68..65535", mtu)
		}
		s.mtu = uint16(mtu)
		// Once per session, but a frontend reconnecting in a loop sets
		// it as often as it likes: 1, 2, 4, ... lines (Debug between).
		n := s.cfg.Counters.mtuSets.Add(1)
		s.log.Log(sparse(n, hclog.Info), "frontend set MTU", "mtu", mtu, "count", n)
		return nil, nil
	case proto.GetConfig:
		return s.getConfig(proto.DecodeConfig(p))
	case proto.SetConfig:
		return nil, errors.New("the virtio-net configuration space is read-only")
	case proto.GetStatus:
		return proto.PutU64(0), nil
	case proto.SendRARP:
		return nil, nil // the guest announces itself (GUEST_ANNOUNCE is the frontend's)
	}
	return nil, fmt.Errorf("request not supported (its protocol feature was not offered)")
}

func closeFD(fd int) { proto.CloseFDs(&proto.Msg{FDs: []int{fd}}) }

func (s *Session) setFeatures(f uint64) error {
	if f&^s.offered != 0 {
		return fmt.Errorf("features %#x were not offered (%#x)", f, s.offered)
	}
	devF := f &^ (1<<proto.FProtocolFeatures | 1<<proto.FLogAll)
	if err := s.dev.SetFeatures(devF); err != nil {
		return err
	}
	logChanged := (s.features^f)&(1<<proto.FLogAll) != 0
	s.features = f
	if logChanged {
		return s.remap()
	}
	return nil
}

// reset stops every ring and forgets the negotiated state; memory stays
// mapped until replaced.
func (s *Session) reset() {
	for _, r := range s.vrings {
		s.stopRing(r)
		s.closeFDs(r)
		*r = vring{index: r.index, kick: -1}
	}
	s.dev.Reset()
	s.features, s.protocol, s.owner = 0, 0, false
}

// remap rebuilds guest memory from the regions and the log, hands it to the
// device (which takes every queue lock: no access to the old memory
// survives), and reprograms running rings, whose addresses are translated
// through the new regions.
func (s *Session) remap() error {
	mem, err := buildMemory(s.regions, s.activeLog())
	if err != nil {
		return err
	}
	if mem == nil {
		// No memory left (the last region removed): stop every ring
		// before the queues lose their memory.
		for _, r := range s.vrings {
			s.stopRing(r)
		}
	}
	s.mem = mem
	s.dev.SetMemory(mem)
	for _, r := range s.vrings {
		if err := s.update(r); err != nil {
			return err
		}
	}
	return nil
}

// setMemTable replaces the whole memory table (vhost-user.rst
// "SET_MEM_TABLE"): every region is checked (its descriptor, its size, the
// limits on what a session maps) before any is mapped, each is mapped at
// its mmap_offset, and the old mappings are unmapped once the device no
// longer uses them. While the table is replaced both tables are mapped:
// the new one is charged to the MapBudget before the old one is released.
func (s *Session) setMemTable(m *proto.Msg) error {
	rs := proto.DecodeMemTable(m.Payload)
	spans := make([]span, len(rs))
	var total uint64
	for i, r := range rs {
		sp, err := regionSpan(r)
		if err != nil {
			return err
		}
		if err := s.countMemFD(checkRegionFD(r, m.FDs[i])); err != nil {
			return err
		}
		spans[i] = sp
		total += sp.length
	}
	if err := s.admit(fmt.Sprintf("SET_MEM_TABLE of %d regions", len(rs)), total, s.regionBytes()); err != nil {
		return err
	}
	var nrs []*region
	fail := func(err error) error {
		for _, r := range nrs {
			r.unmap()
		}
		return s.countLimit(err)
	}
	for i, r := range rs {
		mr, err := mapRegion(r, spans[i], m.FDs[i], s.cfg.MapBudget)
		if err != nil {
			return fail(err)
		}
		nrs = append(nrs, mr)
	}
	if err := checkOverlap(nrs); err != nil {
		return fail(err)
	}
	old := s.regions
	s.regions = nrs
	err := s.remap()
	for _, r := range old {
		r.unmap()
	}
	return err
}

// addMemReg maps one more region (vhost-user.rst "ADD_MEM_REG": only with
// CONFIGURE_MEM_SLOTS negotiated).
func (s *Session) addMemReg(m *proto.Msg) error {
	if s.protocol&(1<<proto.PFConfigureMemSlots) == 0 {
		return errors.New("ADD_MEM_REG without CONFIGURE_MEM_SLOTS negotiated")
	}
	r := proto.DecodeMemReg(m.Payload)
	if len(s.regions) >= MaxMemSlots {
		return fmt.Errorf("all %d memory slots are in use", MaxMemSlots)
	}
	sp, err := regionSpan(r)
	if err != nil {
		return err
	}
	if err := s.countMemFD(checkRegionFD(r, m.FDs[0])); err != nil {
		return err
	}
	what := fmt.Sprintf("region at GPA %#x", r.GPA)
	if err := s.admit(what, sp.length, 0); err != nil {
		return err
	}
	mr, err := mapRegion(r, sp, m.FDs[0], s.cfg.MapBudget)
	if err != nil {
		return s.countLimit(err)
	}
	nrs := append(append([]*region(nil), s.regions...), mr)
	if err := checkOverlap(nrs); err != nil {
		mr.unmap()
		return err
	}
	s.regions = nrs
	return s.remap()
}

// remMemReg unmaps the region matching r's GPA, size and UVA
// (vhost-user.rst "REM_MEM_REG": only with CONFIGURE_MEM_SLOTS).
func (s *Session) remMemReg(r proto.MemRegion) error {
	if s.protocol&(1<<proto.PFConfigureMemSlots) == 0 {
		return errors.New("REM_MEM_REG without CONFIGURE_MEM_SLOTS negotiated")
	}
	for i, x := range s.regions {
		if x.GPA == r.GPA && x.Size == r.Size && x.UVA == r.UVA {
			s.regions = append(append([]*region(nil), s.regions[:i]...), s.regions[i+1:]...)
			err := s.remap()
			x.unmap()
			return err
		}
	}
	return fmt.Errorf("no region at GPA %#x (+%#x) UVA %#x to remove", r.GPA, r.Size, r.UVA)
}

// setLogBase maps the shared dirty log (LOG_SHMFD). The reply has no
// payload (QEMU waits for it; DPDK answers the same way). The log may be
// no larger than the guest memory mapped needs (maxLogSize): it covers
// guest-physical addresses from 0 to the end of the highest region.
func (s *Session) setLogBase(m *proto.Msg) ([]byte, error) {
	if s.protocol&(1<<proto.PFLogSHMFD) == 0 {
		return nil, errors.New("SET_LOG_BASE without LOG_SHMFD")
	}
	d := proto.DecodeLog(m.Payload)
	if err := s.countMemFD(checkLog(d, m.FDs[0])); err != nil {
		return nil, err
	}
	var end uint64
	for _, r := range s.regions {
		end = max(end, r.GPA+r.Size)
	}
	if end == 0 {
		return nil, errors.New("SET_LOG_BASE before any memory is mapped (the log covers the guest memory)")
	}
	if limit := maxLogSize(end); d.Size > limit {
		return nil, s.countLimit(&MapLimitError{What: "dirty log", Asked: d.Size, Limit: limit, Scope: ScopeLog, MemEnd: end})
	}
	var replaced uint64
	if s.dlog != nil {
		replaced = uint64(len(s.dlog.mapping))
	}
	if err := s.admit("dirty log", d.Size, replaced); err != nil {
		return nil, err
	}
	l, err := mapLog(d, m.FDs[0], s.cfg.MapBudget)
	if err != nil {
		return nil, s.countLimit(err)
	}
	old := s.dlog
	s.dlog = l
	err = s.remap()
	if old != nil {
		old.unmap()
	}
	if err != nil {
		return nil, err
	}
	return []byte{}, nil
}

// regionBytes is what the session's regions map.
func (s *Session) regionBytes() uint64 {
	var n uint64
	for _, r := range s.regions {
		n += uint64(len(r.mapping))
	}
	return n
}

// mappedBytes is what the session maps: its regions and its dirty log.
func (s *Session) mappedBytes() uint64 {
	n := s.regionBytes()
	if s.dlog != nil {
		n += uint64(len(s.dlog.mapping))
	}
	return n
}

// admit checks that the session may map n more bytes for what, replaced
// of the bytes it maps being unmapped once they are: its total after must
// stay within Config.MaxMapped (the MapBudget is charged at each mmap).
// Refused: counted, a *MapLimitError.
func (s *Session) admit(what string, n, replaced uint64) error {
	keep := s.mappedBytes() - replaced
	if limit := s.cfg.MaxMapped; n > limit || keep > limit-n {
		return s.countLimit(&MapLimitError{What: what, Asked: n, InUse: keep, Limit: limit, Scope: ScopeSession})
	}
	return nil
}

// countLimit counts err in RefusedMappings if it is a *MapLimitError, and
// returns it.
func (s *Session) countLimit(err error) error {
	var le *MapLimitError
	if errors.As(err, &le) {
		s.cfg.Counters.RefusedMappings.Add(1)
	}
	return err
}

// countMemFD counts err in RefusedMemFDs if it is a *MemFDError, and
// returns it.
func (s *Session) countMemFD(err error) error {
	var fe *MemFDError
	if errors.As(err, &fe) {
		s.cfg.Counters.RefusedMemFDs.Add(1)
	}
	return err
}

func (s *Session) setVringNum(st proto.VringState) error {
	r, err := s.ring(st.Index)
	if err != nil {
		return err
	}
	if st.Num == 0 || st.Num&(st.Num-1) != 0 || st.Num > uint32(s.cfg.MaxQueueSize) {
		return fmt.Errorf("queue %d: size %d is not a power of two up to %d", st.Index, st.Num, s.cfg.MaxQueueSize)
	}
	if r.w != nil && uint16(st.Num) != r.num {
		return fmt.Errorf("queue %d: size changed while the ring runs", st.Index)
	}
	r.num = uint16(st.Num)
	return nil
}

func (s *Session) setVringAddr(a proto.VringAddr) error {
	r, err := s.ring(a.Index)
	if err != nil {
		return err
	}
	if a.Flags&^proto.VringFLog != 0 {
		return fmt.Errorf("queue %d: unknown address flags %#x", a.Index, a.Flags)
	}
	old, oldHas := r.addr, r.hasAddr
	r.addr, r.hasAddr = a, true
	if s.mem != nil && r.num != 0 {
		if _, _, _, err := s.ringGPAs(r); err != nil {
			r.addr, r.hasAddr = old, oldHas
			return err
		}
	}
	return s.update(r)
}

func (s *Session) setVringBase(st proto.VringState) error {
	r, err := s.ring(st.Index)
	if err != nil {
		return err
	}
	if st.Num > 0xffff {
		return fmt.Errorf("queue %d: base %d out of range", st.Index, st.Num)
	}
	if r.w != nil {
		return fmt.Errorf("queue %d: SET_VRING_BASE while the ring runs", st.Index)
	}
	r.base = uint16(st.Num)
	return nil
}

// getVringBase stops the ring and returns its next available index
// (vhost-user.rst "GET_VRING_BASE": the ring is stopped).
func (s *Session) getVringBase(st proto.VringState) ([]byte, error) {
	r, err := s.ring(st.Index)
	if err != nil {
		return nil, err
	}
	s.stopRing(r)
	if r.kick >= 0 {
		closeFD(r.kick)
		r.kick = -1
	}
	r.started = false
	return proto.VringState{Index: st.Index, Num: uint32(r.base)}.Encode(), nil
}

// setVringFD takes a ring's kick, call or error descriptor
// (vhost-user.rst "SET_VRING_KICK", "SET_VRING_CALL", "SET_VRING_ERR").
// Each must be an eventfd: anything else (a pipe, a socket, a file) could
// block the backend's writes or never be signalled, and is refused with an
// error naming what it is (the descriptor is closed by dispatch). Accepted
// eventfds are made non-blocking (QEMU and DPDK create them so already).
func (s *Session) setVringFD(m *proto.Msg) error {
	v := proto.U64(m.Payload)
	r, err := s.ring(uint32(v & proto.VringIndexMask))
	if err != nil {
		return err
	}
	fd := -1
	if v&proto.VringNoFD == 0 {
		if err := acceptEventFD(m.FDs[0]); err != nil {
			// Logged by dispatch or the port, with the request's name.
			s.cfg.Counters.RefusedFDs.Add(1)
			return fmt.Errorf("queue %d: %w", r.index, err)
		}
		fd, m.FDs = m.FDs[0], nil
	}
	switch m.Request {
	case proto.SetVringKick:
		// A new kick descriptor restarts the ring's worker on it.
		s.stopRing(r)
		if r.kick >= 0 {
			closeFD(r.kick)
		}
		r.kick, r.started = fd, true
		return s.update(r)
	case proto.SetVringCall:
		// The notifier writes (and closes) the eventfd; the queue's
		// Signaler only marks it pending.
		var call virtio.Signaler
		if fd >= 0 {
			call = s.notify.signaler(r.index)
		}
		r.call = call
		s.notify.set(callSlot(r.index), eventFD(fd))
		s.dev.ConfigureQueue(r.index, func(q *virtio.Queue) error {
			q.SetSignaler(call)
			return nil
		})
	case proto.SetVringErr:
		s.notify.set(errSlot(r.index), eventFD(fd))
	}
	return nil
}

// acceptEventFD checks fd is an eventfd and makes it non-blocking.
func acceptEventFD(fd int) error {
	if err := virtio.CheckEventFD(fd); err != nil {
		return err
	}
	return virtio.EventFDFrom(fd).SetNonblock()
}

// eventFD wraps fd (-1: nil).
func eventFD(fd int) *virtio.EventFD {
	if fd < 0 {
		return nil
	}
	return virtio.EventFDFrom(fd)
}

func (s *Session) setVringEnable(st proto.VringState) error {
	r, err := s.ring(st.Index)
	if err != nil {
		return err
	}
	if st.Num > 1 {
		return fmt.Errorf("queue %d: enable value %d is not 0 or 1", st.Index, st.Num)
	}
	r.enabled = st.Num == 1
	return s.update(r)
}

// getConfig serves the virtio-net configuration space (virtio 1.2
// §5.1.4): mac, status (LINK_UP), max_virtqueue_pairs, mtu.
func (s *Session) getConfig(c proto.Config) ([]byte, error) {
	var space [12]byte
	copy(space[:6], s.cfg.MAC[:])
	binary.LittleEndian.PutUint16(space[6:], 1) // VIRTIO_NET_S_LINK_UP
	binary.LittleEndian.PutUint16(space[8:], uint16(len(s.vrings)/2))
	binary.LittleEndian.PutUint16(space[10:], s.cfg.MTU)
	if uint64(c.Offset)+uint64(c.Size) > uint64(len(space)) {
		return nil, fmt.Errorf("config read of %d bytes at %d is beyond the %d-byte space", c.Size, c.Offset, len(space))
	}
	c.Data = space[c.Offset : c.Offset+c.Size]
	return c.Encode(), nil
}
