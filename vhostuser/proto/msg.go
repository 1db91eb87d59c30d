package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header layout and flags, vhost-user.rst "Message Specification": request
// (u32), flags (u32: bits 0-1 version, bit 2 reply, bit 3 need_reply), size
// (u32) of the payload that follows.
const (
	HeaderSize    = 12
	Version       = 0x1
	VersionMask   = 0x3
	FlagReply     = 1 << 2
	FlagNeedReply = 1 << 3
	knownFlags    = VersionMask | FlagReply | FlagNeedReply

	// MaxPayload bounds a payload (rust-vmm's MAX_MSG_SIZE is the same 4
	// KiB): the largest legal one, SET_CONFIG, is 12+256 bytes, so a
	// bigger size is hostile and is rejected before anything is read.
	MaxPayload = 4096
	// MaxFDs bounds the descriptors accepted with one message.
	MaxFDs = 32
	// MaxRegions is VHOST_MEMORY_BASELINE_NREGIONS: SET_MEM_TABLE carries
	// at most 8 regions; more need CONFIGURE_MEM_SLOTS.
	MaxRegions = 8
	// MaxConfigSize bounds a GET/SET_CONFIG payload (VHOST_USER_MAX_CONFIG_SIZE).
	MaxConfigSize = 256

	// VringNoFD is bit 8 of the SET_VRING_KICK/CALL/ERR payload: no
	// descriptor follows (vhost-user.rst "SET_VRING_KICK").
	VringNoFD = 1 << 8
	// VringIndexMask is bits 0-7 of that payload: the queue index.
	VringIndexMask = 0xff
	// VringFLog is bit 0 of the vring address flags: log used-ring writes
	// at Log (VHOST_VRING_F_LOG).
	VringFLog = 1 << 0
)

// Header is a message header.
type Header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

// IsReply reports whether the reply bit is set.
func (h Header) IsReply() bool { return h.Flags&FlagReply != 0 }

// NeedReply reports whether the need_reply bit is set (REPLY_ACK).
func (h Header) NeedReply() bool { return h.Flags&FlagNeedReply != 0 }

// Encode writes h into b[:HeaderSize].
func (h Header) Encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], uint32(h.Request))
	binary.LittleEndian.PutUint32(b[4:], h.Flags)
	binary.LittleEndian.PutUint32(b[8:], h.Size)
}

// Msg is one message: header, payload, and the descriptors that came with
// it. Whoever holds a Msg owns its FDs (see CloseFDs).
type Msg struct {
	Header
	Payload []byte
	FDs     []int
}

// Errors wrapped by *MsgError.
var (
	ErrVersion        = errors.New("unsupported protocol version")
	ErrFlags          = errors.New("unknown header flags")
	ErrUnknownRequest = errors.New("unknown request")
	ErrSize           = errors.New("wrong payload size")
	ErrTooBig         = errors.New("payload larger than MaxPayload")
	ErrFDs            = errors.New("wrong number of file descriptors")
	ErrPayload        = errors.New("invalid payload")
)

// MsgError says which message was rejected and why.
type MsgError struct {
	Request Request
	Err     error
	Detail  string
}

func (e *MsgError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("vhost-user %v: %v", e.Request, e.Err)
	}
	return fmt.Sprintf("vhost-user %v: %v: %s", e.Request, e.Err, e.Detail)
}

func (e *MsgError) Unwrap() error { return e.Err }

func msgErr(r Request, err error, format string, args ...any) *MsgError {
	return &MsgError{Request: r, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// DecodeHeader decodes and checks a header: version 1, no unknown flags,
// a known request, a size within MaxPayload.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, msgErr(0, ErrSize, "header of %d bytes", len(b))
	}
	h := Header{
		Request: Request(binary.LittleEndian.Uint32(b[0:])),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	switch {
	case h.Flags&VersionMask != Version:
		return h, msgErr(h.Request, ErrVersion, "flags %#x", h.Flags)
	case h.Flags&^knownFlags != 0:
		return h, msgErr(h.Request, ErrFlags, "flags %#x", h.Flags)
	case h.Size > MaxPayload:
		return h, msgErr(h.Request, ErrTooBig, "size %d", h.Size)
	}
	return h, nil
}

// shape is what a request's payload and descriptors look like.
type shape struct {
	size           int // exact payload size; -1: variable, checked by Validate
	minFDs, maxFDs int
}

var shapes = map[Request]shape{
	GetFeatures: {0, 0, 0}, SetFeatures: {8, 0, 0}, SetOwner: {0, 0, 0}, ResetOwner: {0, 0, 0},
	SetMemTable: {-1, 1, MaxRegions}, SetLogBase: {16, 1, 1}, SetLogFD: {0, 1, 1},
	SetVringNum: {8, 0, 0}, SetVringAddr: {40, 0, 0}, SetVringBase: {8, 0, 0}, GetVringBase: {8, 0, 0},
	SetVringKick: {8, 0, 1}, SetVringCall: {8, 0, 1}, SetVringErr: {8, 0, 1},
	GetProtocolFeatures: {0, 0, 0}, SetProtocolFeatures: {8, 0, 0}, GetQueueNum: {0, 0, 0},
	SetVringEnable: {8, 0, 0}, SendRARP: {8, 0, 0}, NetSetMTU: {8, 0, 0}, SetBackendReqFD: {0, 1, 1},
	IOTLBMsg: {-1, 0, 0}, SetVringEndian: {8, 0, 0}, GetConfig: {-1, 0, 0}, SetConfig: {-1, 0, 0},
	ResetDevice: {0, 0, 0}, VringKick: {8, 0, 0}, GetMaxMemSlots: {0, 0, 0},
	AddMemReg: {40, 1, 1}, RemMemReg: {40, 0, 1}, SetStatus: {8, 0, 0}, GetStatus: {0, 0, 0},
}

// Validate checks a request from the frontend against its request's shape:
// known request, payload size, descriptor count (SET_MEM_TABLE: one per
// region; SET_VRING_KICK/CALL/ERR: one unless VringNoFD). It does not check
// the values themselves (addresses, indices): the handler does, against its
// state.
func Validate(m *Msg) error {
	sh, ok := shapes[m.Request]
	if !ok {
		return msgErr(m.Request, ErrUnknownRequest, "")
	}
	if uint32(len(m.Payload)) != m.Size {
		return msgErr(m.Request, ErrSize, "header says %d bytes, got %d", m.Size, len(m.Payload))
	}
	n := len(m.Payload)
	if sh.size >= 0 && n != sh.size {
		return msgErr(m.Request, ErrSize, "%d bytes, want %d", n, sh.size)
	}
	minFDs, maxFDs := sh.minFDs, sh.maxFDs
	switch m.Request {
	case SetMemTable:
		if n < 8 {
			return msgErr(m.Request, ErrSize, "%d bytes, want at least 8", n)
		}
		nr := binary.LittleEndian.Uint32(m.Payload)
		if nr == 0 || nr > MaxRegions {
			return msgErr(m.Request, ErrPayload, "%d regions, want 1 to %d", nr, MaxRegions)
		}
		if n != 8+32*int(nr) {
			return msgErr(m.Request, ErrSize, "%d bytes for %d regions, want %d", n, nr, 8+32*nr)
		}
		minFDs, maxFDs = int(nr), int(nr)
	case SetVringKick, SetVringCall, SetVringErr:
		v := binary.LittleEndian.Uint64(m.Payload)
		if v&^uint64(VringIndexMask|VringNoFD) != 0 {
			return msgErr(m.Request, ErrPayload, "payload %#x has unknown bits", v)
		}
		if v&VringNoFD != 0 {
			minFDs, maxFDs = 0, 0
		} else {
			minFDs = 1
		}
	case GetConfig, SetConfig:
		if n < 12 {
			return msgErr(m.Request, ErrSize, "%d bytes, want at least 12", n)
		}
		sz := binary.LittleEndian.Uint32(m.Payload[4:])
		if sz > MaxConfigSize || n != 12+int(sz) {
			return msgErr(m.Request, ErrSize, "%d bytes with config size %d", n, sz)
		}
	case IOTLBMsg:
		return msgErr(m.Request, ErrUnknownRequest, "IOTLB is not supported (VIRTIO_F_IOMMU_PLATFORM is never offered)")
	}
	if len(m.FDs) < minFDs || len(m.FDs) > maxFDs {
		return msgErr(m.Request, ErrFDs, "%d descriptors, want %d to %d", len(m.FDs), minFDs, maxFDs)
	}
	return nil
}
