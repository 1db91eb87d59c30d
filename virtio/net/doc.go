// Package vnet is the virtio-net dataplane (virtio 1.2 §5.1), independent of
// the transport (PCI in vmm/, vhost-user in vhost/), of KVM and of the switch.
//
// A Device holds N queue pairs and a control queue, laid out as §5.1.2 says:
// receiveq1 = 0, transmitq1 = 1, ..., receiveqN = 2(N-1), transmitqN =
// 2(N-1)+1, controlq = 2N. The transport:
//
//   - builds it with New(Config{QueuePairs, Sink, OnFault, Logger}),
//   - hands it guest memory with SetMemory (again on every remap),
//   - after feature negotiation calls SetFeatures (VIRTIO_F_VERSION_1 is
//     required: the header is always the 12-byte virtio_net_hdr_v1),
//   - configures and enables each queue with ConfigureQueue (size, ring
//     addresses, signaler, Enable),
//   - on each kick calls HandleKick(queueIndex) (again while it returns true),
//     or, polling, calls Poll(queueIndex) on the transmit queues while it
//     finds work and EnableKick before it sleeps (re-polling if that
//     reports new chains),
//   - delivers frames to the guest with Receive or ReceiveOn,
//   - on device reset calls Reset; OnFault tells it when a queue is
//     malformed and the device must set DEVICE_NEEDS_RESET.
//
// Guest-transmitted frames go to the Sink in batches; Data may alias guest
// memory and is only valid during Deliver. Receive copies frames into guest
// buffers. Nothing on these paths allocates per frame.
//
// Concurrency: each queue has its own mutex; TX of one pair, RX of another
// and the control queue can run on different goroutines, and Receive may be
// called from any goroutine.
package vnet
