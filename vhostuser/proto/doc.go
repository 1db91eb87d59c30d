// Package proto is the vhost-user wire format (QEMU docs/interop/vhost-user.rst):
// the 12-byte message header, the request and feature numbers, the payload
// types with their encoders and decoders, and Conn, which reads and writes
// whole messages with their file descriptors (SCM_RIGHTS) on a unix socket.
//
// It knows nothing of devices: the backend (vhost/backend) and the frontend
// (vhostuser/frontend) are built on it. Everything decoded here is checked
// before use: ReadMsg rejects a header with a wrong version, an unknown
// request, a size beyond MaxPayload or one that does not match the
// request's payload, and a message carrying more descriptors than its
// request takes; decoders never panic on short or hostile input.
package proto
