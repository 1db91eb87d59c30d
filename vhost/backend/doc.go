// Package backend is the device side of a vhost-user connection
// (QEMU docs/interop/vhost-user.rst) for virtio-net: a Session reads the
// frontend's messages, validates each before use, maps the frontend's
// memory (SET_MEM_TABLE, ADD_MEM_REG), configures the rings of a
// vnet.Device (virtio/net, the same dataplane as the VMM's device) and runs
// one goroutine per started ring that waits on its kick eventfd and calls
// HandleKick.
//
// Notification descriptors (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR)
// must be eventfds; anything else is refused with an error naming the
// message, the queue and what the descriptor is, and accepted ones are made
// non-blocking. The frontend shares them and may still make a write block
// (clear O_NONBLOCK, fill the counter), so no dataplane goroutine writes
// them: a queue's Signaler marks it pending for the session's notifier,
// the one goroutine that writes (and closes) the session's call and error
// eventfds (notify.go). A kick descriptor that hangs up or fails ends the
// session. Ending a session waits for its ring workers and notifier at
// most Config.StopTimeout, after unsticking a blocked write; what is still
// stuck then is abandoned and counted (Counters).
//
// Memory (SET_MEM_TABLE, ADD_MEM_REG, SET_LOG_BASE) is mapped only from
// regular files on tmpfs (a memfd, /dev/shm) or hugetlbfs, what QEMU, DPDK
// and libvirt share guest memory from: a page fault on a file of another
// filesystem (FUSE served by the frontend itself, a hung NFS mount) can
// block forever, and with it every garbage collection of the daemon. Any
// other descriptor is refused with an error naming its filesystem
// (*MemFDError, Counters.RefusedMemFDs). What a session maps, its regions
// and dirty log together, is bounded by Config.MaxMapped (1 TiB by
// default), what all sessions map by their MapBudget (64 TiB for the
// process by default), and a dirty log by the size the guest memory
// mapped needs; a request past a limit maps nothing and is refused with an
// error naming what it asked and the limit (*MapLimitError,
// Counters.RefusedMappings). ADD_MEM_REG and REM_MEM_REG need
// CONFIGURE_MEM_SLOTS negotiated (vhost-user.rst).
//
// Every request refused is counted (Counters.RejectedRequests). What a
// frontend can repeat at will (refusals reported by REPLY_ACK, NET_SET_MTU,
// a ring resumed from its used index, a kick descriptor that hangs up) is
// logged at its level the 1st, 2nd, 4th, 8th, ... time and at Debug
// otherwise, so a flood of requests or reconnections writes O(log n)
// lines.
//
// Transmit rings are busy-polled (Device.Poll, kicks suppressed) while
// they have work and for Config.BusyPoll after, then kicks are re-enabled
// and the goroutine sleeps: under load the frontend sends no kicks and the
// backend makes no syscalls. Receive rings ask for no kicks at all (the
// device pulls their buffers when frames arrive).
//
// With several queue pairs (Config.QueuePairs; GET_QUEUE_NUM answers it)
// each transmit ring has its worker, and the device tells its sink which
// pair a batch came from (vnet.QueueSink), so the switch forwards the
// pairs in parallel. The device's active pairs are those, from pair 0,
// whose receive rings run: the frontend enables them with
// SET_VRING_ENABLE (QEMU for the pairs its guest set with
// MQ_VQ_PAIRS_SET).
//
//	s, _ := backend.New(backend.Config{Name: "a", Sink: port, OnStart: ..., OnStop: ...})
//	err := s.Serve(proto.NewConn(unixConn)) // until the frontend goes away
//
// A protocol violation (wrong size, unknown request, missing or extra
// descriptors) or an invalid value (overlapping regions, a ring outside
// mapped memory, a queue index out of range, a queue size that is not a
// power of two) ends the session with an error naming the message, unless
// the frontend asked for a REPLY_ACK, which then carries the failure. When
// Serve returns every ring goroutine has stopped and every received
// descriptor and mapping is released (but for a goroutine abandoned as
// stuck, which closes its own descriptors when it returns).
package backend
