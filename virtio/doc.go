// Package virtio is the transport-independent core of hvnet's virtio devices:
// guest memory access (Memory), split virtqueues (Queue, Chain), notification
// plumbing (Signaler, EventFD), and the feature and status constants of the
// virtio 1.2 specification.
//
// It is used by the VMM's virtio-pci devices (vmm/) and by the vhost-user
// backend (vhost/); only the control plane differs between the two. A device
// gets a Queue, configures it from the transport (size, ring addresses,
// EVENT_IDX), enables it, then on each kick pops descriptor chains, reads or
// writes the buffers they describe through Memory, returns them with AddUsed
// and calls Flush, which publishes the used index and signals the driver when
// the notification-suppression rules ask for it.
//
// Everything the driver writes is hostile: every guest address is bounds- and
// overflow-checked and every ring index validated; errors carry their data and
// never panic. A malformed ring (a loop, an index out of range, an available
// index that jumps) is a fault (see IsFault): the queue stops until reset and
// the device should set DEVICE_NEEDS_RESET.
package virtio
