package vmm

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/virtio"
)

// The modern virtio-pci transport (virtio 1.2 §4.1): a PCI function whose
// capabilities point into one 32-bit memory BAR holding the common
// configuration, the ISR, the device configuration, the notification
// area and the MSI-X table and PBA. Queue notifications are ioeventfds
// (a kick never leaves KVM); interrupts are irqfds on MSI routes
// (msix.go). Each queue has a dataplane goroutine waiting on its
// ioeventfd; nothing device-specific runs on a vCPU thread.

// virtioBackend is the device-type-specific half of a virtio-pci function
// (netdev.go for virtio-net).
type virtioBackend interface {
	deviceType() uint16 // virtio device ID (§5): 1 for network
	pciClass() (class, subclass byte)
	offered() uint64
	numQueues() int
	maxQueueSize() uint16
	readConfig(off uint64, data []byte) // device-specific configuration
	writeConfig(off uint64, data []byte)
	setFeatures(f uint64) error
	configureQueue(i int, fn func(q *virtio.Queue) error) error
	activate()
	reset()
	kick(i int) // on queue i's dataplane goroutine
}

// externalKicks is implemented by a backend some of whose queues are
// served elsewhere (a vhost-user backend waits on their ioeventfds
// itself): the transport runs no dataplane goroutine for those.
type externalKicks interface {
	externalKick(i int) bool
}

// BAR0 layout.
const (
	vpciBarSize     = 0x8000
	vpciCommonOff   = 0x0000
	vpciCommonLen   = 0x38 // struct virtio_pci_common_cfg up to queue_device
	vpciISROff      = 0x1000
	vpciDeviceOff   = 0x2000
	vpciDeviceLen   = 0x1000
	vpciNotifyOff   = 0x3000
	vpciNotifyMult  = 4 // notify_off_multiplier: one dword per queue
	vpciMSIXOff     = 0x4000
	vpciPBAOff      = 0x6000
	vpciMaxQueues   = 0x1000 / vpciNotifyMult
	virtioPCIVendor = 0x1af4
	virtioPCIDevice = 0x1040 // + device type (§4.1.2.1)
)

// Capability types (virtio 1.2 §4.1.4) and PCI capability IDs.
const (
	capVendor       = 0x09
	capMSIX         = 0x11
	vpciCapCommon   = 1
	vpciCapNotify   = 2
	vpciCapISR      = 3
	vpciCapDevice   = 4
	pciCapPtr       = 0x34
	pciBAR0         = 0x10
	pciStatusCapLst = 0x10
	pciCmdMemory    = 0x02
	capMSIXOff      = 0x84 // config-space offset of the MSI-X capability
)

// ISR status bits (§4.1.4.5).
const (
	isrQueue  = 1
	isrConfig = 2
)

// VirtioPCIStats counts what the transport saw.
type VirtioPCIStats struct {
	Kicks      []uint64 // per queue: notifications handled
	Interrupts []uint64 // per queue: used-buffer notifications raised
	ConfigIRQs uint64   // configuration-change interrupts raised
	BadAccess  uint64   // guest BAR accesses ignored (bad offset, width, value)
	NeedsReset uint64   // times the device entered DEVICE_NEEDS_RESET
	// FeaturesRefused counts FEATURES_OK writes refused for the feature
	// set the driver chose.
	FeaturesRefused uint64
	LostKicks       uint64 // times chains were found waiting without a notification (control or transmit queue)
	LostIRQs        uint64 // used-buffer notifications sent again: the driver still waited for one
}

type vpciQueue struct {
	size    uint16
	vector  atomic.Uint32
	enabled bool
	desc    uint64
	driver  uint64
	device  uint64
	kick    *virtio.EventFD
	kicks   atomic.Uint64
	irqs    atomic.Uint64
}

// virtioPCI is one virtio-pci function.
type virtioPCI struct {
	cfg  ConfigSpace
	be   virtioBackend
	plat platform
	log  hclog.Logger
	msix *msix

	mu           sync.Mutex // common configuration state below
	status       atomic.Uint32
	devFeatSel   uint32
	drvFeatSel   uint32
	drvFeatures  uint64
	configGen    atomic.Uint32
	queueSel     uint16
	configVector atomic.Uint32
	queues       []*vpciQueue
	notifyBase   uint64 // where the ioeventfds are, 0 for none

	isr        atomic.Uint32
	badAccess  atomic.Uint64
	needsReset atomic.Uint64
	// featRefused: FEATURES_OK refused (logged at powers of two: a
	// guest may write it in a loop)
	featRefused atomic.Uint64
	configIRQs  atomic.Uint64
	closing     atomic.Bool
	wg          sync.WaitGroup
}

var (
	_ PCIDevice  = (*virtioPCI)(nil)
	_ MMIODevice = (*virtioPCI)(nil)
)

// newVirtioPCI builds the function with BAR0 at bar (0: unassigned) and
// starts a dataplane goroutine per queue.
func newVirtioPCI(be virtioBackend, plat platform, bar uint32, log hclog.Logger) (_ *virtioPCI, err error) {
	n := be.numQueues()
	if n < 1 || n > vpciMaxQueues || n+1 > 2048 {
		return nil, fmt.Errorf("virtio-pci: %d queues, want 1..%d", n, vpciMaxQueues)
	}
	if bar%vpciBarSize != 0 {
		return nil, fmt.Errorf("virtio-pci: BAR address %#x not aligned to its size %#x", bar, vpciBarSize)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	d := &virtioPCI{be: be, plat: plat, log: log}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.configVector.Store(msixNoVector)
	if d.msix, err = newMSIX(plat, n+1); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		q := &vpciQueue{size: be.maxQueueSize()}
		q.vector.Store(msixNoVector)
		if q.kick, err = virtio.NewEventFD(false); err != nil {
			return nil, err
		}
		d.queues = append(d.queues, q)
	}
	d.initConfigSpace(bar)
	if err := d.remapNotify(); err != nil {
		return nil, err
	}
	ext, _ := be.(externalKicks)
	for i := range d.queues {
		if ext != nil && ext.externalKick(i) {
			continue
		}
		d.wg.Add(1)
		go d.dataplane(i)
	}
	return d, nil
}

// initConfigSpace fills the type 0 header and the capability list
// (virtio 1.2 §4.1.2, §4.1.4; PCI 3.0 §6.7, §6.8.2).
func (d *virtioPCI) initConfigSpace(bar uint32) {
	c := &d.cfg
	putU16(c.data[pciVendorID:], virtioPCIVendor)
	putU16(c.data[pciDeviceID:], virtioPCIDevice+d.be.deviceType())
	putU16(c.data[pciCommand:], pciCmdMemory)
	putU16(c.data[pciStatus:], pciStatusCapLst)
	c.data[pciRevision] = 1 // modern device
	cl, sub := d.be.pciClass()
	c.data[0x0b], c.data[0x0a] = cl, sub
	putU16(c.data[0x2c:], virtioPCIVendor) // subsystem vendor
	putU16(c.data[0x2e:], 0x1100)          // subsystem ID, as QEMU
	c.data[pciCapPtr] = 0x40
	// Command: I/O, memory, bus master; INTx disable.
	c.wmask[pciCommand], c.wmask[pciCommand+1] = 0x07, 0x04
	// BAR0: 32-bit non-prefetchable memory; the size shows in which bits
	// stay zero when all ones are written.
	putU32(c.data[pciBAR0:], bar)
	putU32(c.wmask[pciBAR0:], ^uint32(vpciBarSize-1))

	caps := []struct {
		off, typ byte
		start    uint32
		length   uint32
	}{
		{0x40, vpciCapCommon, vpciCommonOff, vpciCommonLen},
		{0x50, vpciCapISR, vpciISROff, 1},
		{0x60, vpciCapDevice, vpciDeviceOff, vpciDeviceLen},
		{0x70, vpciCapNotify, vpciNotifyOff, uint32(len(d.queues)) * vpciNotifyMult},
	}
	for i, cp := range caps {
		next := byte(capMSIXOff)
		if i+1 < len(caps) {
			next = caps[i+1].off
		}
		l := byte(16)
		if cp.typ == vpciCapNotify {
			l = 20
			putU32(c.data[int(cp.off)+16:], vpciNotifyMult)
		}
		b := c.data[cp.off:]
		b[0], b[1], b[2], b[3], b[4] = capVendor, next, l, cp.typ, 0 // bar 0
		putU32(b[8:], cp.start)
		putU32(b[12:], cp.length)
	}
	m := c.data[capMSIXOff:]
	m[0], m[1] = capMSIX, 0
	putU16(m[2:], uint16(d.msix.size()-1))
	putU32(m[4:], vpciMSIXOff) // BIR 0
	putU32(m[8:], vpciPBAOff)
	c.wmask[capMSIXOff+3] = (msixMsgEnable | msixMsgFuncMask) >> 8
}

// ConfigRead implements PCIDevice.
func (d *virtioPCI) ConfigRead(off uint8, size int) uint32 { return d.cfg.ConfigRead(off, size) }

// ConfigWrite implements PCIDevice: after the write, a moved or disabled
// BAR moves the ioeventfds, and the MSI-X control bits take effect.
func (d *virtioPCI) ConfigWrite(off uint8, size int, v uint32) {
	d.cfg.ConfigWrite(off, size, v)
	touches := func(lo, hi int) bool { return int(off) < hi && int(off)+size > lo }
	if touches(pciCommand, pciCommand+2) || touches(pciBAR0, pciBAR0+4) {
		d.mu.Lock()
		err := d.remapNotify()
		d.mu.Unlock()
		if err != nil {
			d.log.Error("moving queue notifications", "error", err)
		}
	}
	if touches(capMSIXOff+2, capMSIXOff+4) {
		if err := d.msix.setControl(uint16(d.cfg.ConfigRead(capMSIXOff+2, 2))); err != nil {
			d.log.Error("MSI-X control", "error", err)
		}
	}
}

// MMIORange implements MMIODevice: BAR0 while memory decoding is on.
func (d *virtioPCI) MMIORange() (uint64, uint64, bool) {
	base, ok := d.barBase()
	return base, vpciBarSize, ok && d.cfg.ConfigRead(pciCommand, 2)&pciCmdMemory != 0
}

// barBase returns BAR0's address, unless it is unassigned or holds the
// all-ones sizing pattern.
func (d *virtioPCI) barBase() (uint64, bool) {
	base := uint64(d.cfg.ConfigRead(pciBAR0, 4) &^ 0xf)
	return base, base != 0 && base+vpciBarSize <= mmioHoleEnd && base != uint64(^uint32(vpciBarSize-1))
}

// remapNotify puts the queues' ioeventfds where the notification area is
// now. They follow the BAR's address only, not the memory-space enable
// bit, which Linux toggles around the sizing of every BAR at boot: a
// disabled BAR sees no notifications anyway, and the ioctls (each waits for
// an SRCU grace period in KVM) are saved. Called with d.mu held (or before
// the device is shared).
func (d *virtioPCI) remapNotify() error {
	base, ok := d.barBase()
	if !ok {
		base = 0
	} else {
		base += vpciNotifyOff
	}
	if base == d.notifyBase {
		return nil
	}
	var errs []error
	for i, q := range d.queues {
		addr := d.notifyBase + uint64(i)*vpciNotifyMult
		if d.notifyBase != 0 {
			errs = append(errs, d.plat.IOEvent(q.kick.FD(), addr, 2, false))
		}
	}
	d.notifyBase = 0
	for i, q := range d.queues {
		if base == 0 {
			break
		}
		if err := d.plat.IOEvent(q.kick.FD(), base+uint64(i)*vpciNotifyMult, 2, true); err != nil {
			errs = append(errs, err)
			break
		}
		d.notifyBase = base
	}
	return errors.Join(errs...)
}

// MMIORead implements MMIODevice.
func (d *virtioPCI) MMIORead(off uint64, data []byte) {
	ok := true
	switch {
	case off < vpciCommonOff+vpciCommonLen:
		ok = d.commonRead(off, data)
	case off == vpciISROff && len(data) == 1:
		// Reading the ISR clears it (§4.1.4.5).
		data[0] = byte(d.isr.Swap(0))
	case off >= vpciDeviceOff && off < vpciDeviceOff+vpciDeviceLen:
		d.be.readConfig(off-vpciDeviceOff, data)
	case off >= vpciMSIXOff && off < vpciPBAOff:
		ok = d.msix.tableRead(off-vpciMSIXOff, data)
	case off >= vpciPBAOff:
		ok = d.msix.pbaRead(off-vpciPBAOff, data)
	default:
		clear(data)
		ok = off >= vpciNotifyOff && off < vpciMSIXOff // notify reads as 0
	}
	if !ok {
		d.bad("read", off, len(data))
	}
}

// MMIOWrite implements MMIODevice.
func (d *virtioPCI) MMIOWrite(off uint64, data []byte) {
	ok := true
	var err error
	switch {
	case off < vpciCommonOff+vpciCommonLen:
		ok = d.commonWrite(off, data)
	case off >= vpciDeviceOff && off < vpciDeviceOff+vpciDeviceLen:
		d.be.writeConfig(off-vpciDeviceOff, data)
	case off >= vpciNotifyOff && off < vpciMSIXOff:
		// A notification KVM did not catch (another width): same effect.
		i := (off - vpciNotifyOff) / vpciNotifyMult
		if ok = i < uint64(len(d.queues)); ok {
			err = d.queues[i].kick.Signal()
		}
	case off >= vpciMSIXOff && off < vpciPBAOff:
		ok, err = d.msix.tableWrite(off-vpciMSIXOff, data)
	default:
		ok = false // the ISR and the PBA are read-only
	}
	if err != nil {
		d.log.Error("virtio-pci write", "offset", off, "error", err)
	}
	if !ok {
		d.bad("write", off, len(data))
	}
}

// bad counts an ignored guest access, logging powers of two only.
func (d *virtioPCI) bad(what string, off uint64, n int) {
	if c := d.badAccess.Add(1); bits.OnesCount64(c) == 1 {
		d.log.Warn("ignored bad BAR access", "access", what, "offset", fmt.Sprintf("%#x", off), "len", n, "count", c)
	}
}

// dataplane waits for queue i's notifications and hands them to the
// backend, on its own goroutine.
func (d *virtioPCI) dataplane(i int) {
	defer d.wg.Done()
	q := d.queues[i]
	for {
		if _, err := q.kick.Read(); err != nil || d.closing.Load() {
			return
		}
		q.kicks.Add(1)
		// Before DRIVER_OK, activate replays the kick. After a fault
		// (DEVICE_NEEDS_RESET) only the faulted queue stops, being
		// broken: Linux 6.1's virtio-net ignores NEEDS_RESET, and a
		// control command left unanswered would hang its CPU.
		if d.status.Load()&virtio.StatusDriverOK == 0 {
			continue
		}
		d.be.kick(i)
	}
}

// queueSignaler raises queue i's MSI-X vector (the one the driver chose,
// read at signal time).
type queueSignaler struct {
	d *virtioPCI
	i int
}

func (s queueSignaler) Signal() error {
	q := s.d.queues[s.i]
	q.irqs.Add(1)
	s.d.isr.Or(isrQueue)
	return s.d.msix.signal(uint16(q.vector.Load()))
}

// configChanged bumps config_generation and raises the configuration
// change interrupt (§4.1.4.5, §2.5.1).
func (d *virtioPCI) configChanged() {
	d.configGen.Add(1)
	d.isr.Or(isrConfig)
	d.configIRQs.Add(1)
	if err := d.msix.signal(uint16(d.configVector.Load())); err != nil {
		d.log.Error("configuration change interrupt", "error", err)
	}
}

// failed puts the device into DEVICE_NEEDS_RESET (§2.1.2) and tells the
// driver; the rest of the machine runs on. Safe from any goroutine (it
// takes no lock that a queue's lock may be held under).
func (d *virtioPCI) failed(err error) {
	for {
		old := d.status.Load()
		if old&virtio.StatusDeviceNeedsReset != 0 {
			return
		}
		if d.status.CompareAndSwap(old, old|virtio.StatusDeviceNeedsReset) {
			break
		}
	}
	// A guest can make this happen in a loop (reset, a bad queue, enable):
	// logged the 1st, 2nd, 4th... time.
	if c := d.needsReset.Add(1); bits.OnesCount64(c) == 1 {
		d.log.Error("device needs reset", "error", err, "count", c)
	}
	d.configChanged()
}

// stats snapshots the counters.
func (d *virtioPCI) stats() VirtioPCIStats {
	s := VirtioPCIStats{ConfigIRQs: d.configIRQs.Load(), BadAccess: d.badAccess.Load(), NeedsReset: d.needsReset.Load(),
		FeaturesRefused: d.featRefused.Load()}
	for _, q := range d.queues {
		s.Kicks = append(s.Kicks, q.kicks.Load())
		s.Interrupts = append(s.Interrupts, q.irqs.Load())
	}
	return s
}

// close stops the dataplane goroutines and releases the eventfds.
func (d *virtioPCI) close() error {
	d.closing.Store(true)
	for _, q := range d.queues {
		_ = q.kick.Signal() // wake the goroutine; it sees closing
	}
	d.wg.Wait()
	var errs []error
	for _, q := range d.queues {
		errs = append(errs, q.kick.Close())
	}
	if d.msix != nil {
		errs = append(errs, d.msix.close())
	}
	return errors.Join(errs...)
}
