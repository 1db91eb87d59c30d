package virtio

// Device status bits, virtio 1.2 §2.1 "Device Status Field".
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Reserved (device-independent) feature bits, virtio 1.2 §6 "Reserved
// Feature Bits". Values are bit numbers; use Feature(bit) for the mask.
const (
	// FIndirectDesc: the driver may use indirect descriptor tables
	// (§2.7.5.3).
	FIndirectDesc = 28
	// FEventIdx: used_event / avail_event notification suppression
	// (§2.7.7, §2.7.10).
	FEventIdx = 29
	// FVersion1: compliance with virtio 1.x (no legacy interface).
	FVersion1 = 32
	// FAccessPlatform: the device accesses memory through a platform IOMMU.
	FAccessPlatform = 33
	// FRingPacked: packed virtqueue layout (§2.8); not supported here.
	FRingPacked = 34
	// FInOrder: buffers are used in the order they were made available.
	FInOrder = 35
	// FOrderPlatform: memory accesses are ordered as the platform requires.
	FOrderPlatform = 36
	// FSRIOV: single root I/O virtualization.
	FSRIOV = 37
	// FNotificationData: the driver passes extra data in notifications.
	FNotificationData = 38
	// FNotifConfigData: config-data notification (virtio 1.2).
	FNotifConfigData = 39
	// FRingReset: individual virtqueue reset (virtio 1.2).
	FRingReset = 40
)

// Feature returns the feature mask for bit number bit.
func Feature(bit uint) uint64 { return 1 << bit }

// HasFeature reports whether bit number bit is set in features.
func HasFeature(features uint64, bit uint) bool { return features&(1<<bit) != 0 }
