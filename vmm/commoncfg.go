package vmm

import (
	"fmt"
	"math/bits"

	"github.com/hvnet/hvnet/virtio"
)

// struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3) register offsets.
const (
	ccDeviceFeatureSelect = 0x00
	ccDeviceFeature       = 0x04
	ccDriverFeatureSelect = 0x08
	ccDriverFeature       = 0x0c
	ccConfigMSIXVector    = 0x10
	ccNumQueues           = 0x12
	ccDeviceStatus        = 0x14
	ccConfigGeneration    = 0x15
	ccQueueSelect         = 0x16
	ccQueueSize           = 0x18
	ccQueueMSIXVector     = 0x1a
	ccQueueEnable         = 0x1c
	ccQueueNotifyOff      = 0x1e
	ccQueueDesc           = 0x20
	ccQueueDriver         = 0x28
	ccQueueDevice         = 0x30
)

// commonRead reads the common configuration. Reads of any width see a
// snapshot of the structure.
func (d *virtioPCI) commonRead(off uint64, data []byte) bool {
	var b [vpciCommonLen]byte
	d.mu.Lock()
	putU32(b[ccDeviceFeatureSelect:], d.devFeatSel)
	if d.devFeatSel < 2 {
		putU32(b[ccDeviceFeature:], uint32(d.be.offered()>>(32*d.devFeatSel)))
	}
	putU32(b[ccDriverFeatureSelect:], d.drvFeatSel)
	if d.drvFeatSel < 2 {
		putU32(b[ccDriverFeature:], uint32(d.drvFeatures>>(32*d.drvFeatSel)))
	}
	putU16(b[ccConfigMSIXVector:], uint16(d.configVector.Load()))
	putU16(b[ccNumQueues:], uint16(len(d.queues)))
	b[ccDeviceStatus] = byte(d.status.Load())
	b[ccConfigGeneration] = byte(d.configGen.Load())
	putU16(b[ccQueueSelect:], d.queueSel)
	if q := d.selected(); q != nil {
		putU16(b[ccQueueSize:], q.size)
		putU16(b[ccQueueMSIXVector:], uint16(q.vector.Load()))
		if q.enabled {
			putU16(b[ccQueueEnable:], 1)
		}
		putU16(b[ccQueueNotifyOff:], d.queueSel) // notify at queueSel × multiplier
		putU64(b[ccQueueDesc:], q.desc)
		putU64(b[ccQueueDriver:], q.driver)
		putU64(b[ccQueueDevice:], q.device)
	}
	d.mu.Unlock()
	if off+uint64(len(data)) > uint64(len(b)) {
		clear(data)
		return false
	}
	copy(data, b[off:])
	return true
}

// selected is the queue queue_select names, or nil (§4.1.4.3: a queue
// that does not exist reads queue_size 0). Called with d.mu held.
func (d *virtioPCI) selected() *vpciQueue {
	if int(d.queueSel) < len(d.queues) {
		return d.queues[d.queueSel]
	}
	return nil
}

// commonWrite writes one register, which must be accessed at its own
// offset and width; anything else is ignored and counted.
func (d *virtioPCI) commonWrite(off uint64, data []byte) bool {
	n := len(data)
	v := uint64(getN(data[:min(n, 4)]))
	if n == 8 {
		v = getU64(data)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.selected()
	switch {
	case off == ccDeviceFeatureSelect && n == 4:
		d.devFeatSel = uint32(v)
	case off == ccDriverFeatureSelect && n == 4:
		d.drvFeatSel = uint32(v)
	case off == ccDriverFeature && n == 4:
		// Features are fixed once FEATURES_OK is set (§3.1.1).
		if d.drvFeatSel >= 2 || d.status.Load()&virtio.StatusFeaturesOK != 0 {
			return false
		}
		sh := 32 * d.drvFeatSel
		d.drvFeatures = d.drvFeatures&^(0xffffffff<<sh) | v<<sh
	case off == ccConfigMSIXVector && n == 2:
		d.configVector.Store(d.vectorOrNone(v))
	case off == ccDeviceStatus && n == 1:
		d.setStatus(uint32(v))
	case off == ccQueueSelect && n == 2:
		d.queueSel = uint16(v)
	case q == nil || q.enabled:
		// Queue registers of a queue that does not exist, or of an
		// enabled one (§4.1.4.3.2: the driver MUST NOT change them).
		return false
	case off == ccQueueSize && n == 2:
		if v == 0 || v&(v-1) != 0 || v > uint64(d.be.maxQueueSize()) {
			return false
		}
		q.size = uint16(v)
	case off == ccQueueMSIXVector && n == 2:
		q.vector.Store(d.vectorOrNone(v))
	case off == ccQueueEnable && n == 2:
		if v != 1 {
			return false // only 1 may be written (§4.1.4.3.2)
		}
		d.enableQueue(int(d.queueSel), q)
	case off >= ccQueueDesc && off < vpciCommonLen && (n == 4 || n == 8) && off%uint64(n) == 0:
		reg := &q.desc
		switch {
		case off >= ccQueueDevice:
			reg = &q.device
		case off >= ccQueueDriver:
			reg = &q.driver
		}
		if n == 8 {
			*reg = v
		} else if off%8 == 0 {
			*reg = *reg&^0xffffffff | v
		} else {
			*reg = *reg&0xffffffff | v<<32
		}
	default:
		return false
	}
	return true
}

// vectorOrNone accepts an MSI-X vector the table has; otherwise the
// register reads back NO_VECTOR, which tells the driver (§4.1.5.1.2).
func (d *virtioPCI) vectorOrNone(v uint64) uint32 {
	if v < uint64(d.msix.size()) {
		return uint32(v)
	}
	return msixNoVector
}

// enableQueue hands the queue's layout to the backend and enables it. A
// layout the queue refuses leaves it disabled, and the device needs reset.
func (d *virtioPCI) enableQueue(i int, q *vpciQueue) {
	err := d.be.configureQueue(i, func(vq *virtio.Queue) error {
		if err := vq.SetSize(q.size); err != nil {
			return err
		}
		if err := vq.SetAddrs(q.desc, q.driver, q.device); err != nil {
			return err
		}
		vq.SetSignaler(queueSignaler{d, i})
		return vq.Enable()
	})
	if err != nil {
		d.failed(fmt.Errorf("enabling queue %d: %w", i, err))
		return
	}
	q.enabled = true
}

// setStatus implements the device status state machine (§2.1, §3.1.1):
// 0 resets; otherwise bits only accumulate; FEATURES_OK is kept only for
// an acceptable feature set; DRIVER_OK starts the device. Called with
// d.mu held.
func (d *virtioPCI) setStatus(v uint32) {
	if v == 0 {
		d.resetLocked()
		return
	}
	v &= 0xff &^ virtio.StatusDeviceNeedsReset // the device's own bit
	old := d.status.Load()
	added := v &^ old
	if added&virtio.StatusFeaturesOK != 0 {
		if err := d.acceptFeatures(); err != nil {
			// The guest may write FEATURES_OK again and again: counted,
			// logged the 1st, 2nd, 4th... time.
			if c := d.featRefused.Add(1); bits.OnesCount64(c) == 1 {
				d.log.Warn("feature negotiation refused", "features", fmt.Sprintf("%#x", d.drvFeatures), "error", err, "count", c)
			}
			v &^= virtio.StatusFeaturesOK
			added &^= virtio.StatusFeaturesOK
		}
	}
	for {
		if d.status.CompareAndSwap(old, old|v) {
			break
		}
		old = d.status.Load() // only the dataplane's NEEDS_RESET races with us
	}
	if added&virtio.StatusDriverOK != 0 && (old|v)&virtio.StatusFeaturesOK != 0 {
		d.be.activate()
	}
}

// acceptFeatures checks the driver's features against the offer (§2.2.1:
// a subset; this device is modern only, so VERSION_1 is required) and
// hands them to the backend.
func (d *virtioPCI) acceptFeatures() error {
	f := d.drvFeatures
	if extra := f &^ d.be.offered(); extra != 0 {
		return fmt.Errorf("features %#x were not offered", extra)
	}
	if !virtio.HasFeature(f, virtio.FVersion1) {
		return fmt.Errorf("VIRTIO_F_VERSION_1 not accepted")
	}
	return d.be.setFeatures(f)
}

// resetLocked is a device reset (§2.4): queues, features and vectors go
// back to their initial values; the MSI-X table is the PCI function's and
// stays.
func (d *virtioPCI) resetLocked() {
	d.be.reset()
	d.status.Store(0)
	d.drvFeatures, d.devFeatSel, d.drvFeatSel, d.queueSel = 0, 0, 0, 0
	d.configVector.Store(msixNoVector)
	for _, q := range d.queues {
		q.size, q.enabled = d.be.maxQueueSize(), false
		q.desc, q.driver, q.device = 0, 0, 0
		q.vector.Store(msixNoVector)
	}
	d.isr.Store(0)
}
