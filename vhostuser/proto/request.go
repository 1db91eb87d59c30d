package proto

import "fmt"

// Request is a vhost-user request code (vhost-user.rst, "Front-end message
// types").
type Request uint32

// Front-end message types. Only the ones hvnet handles or rejects by name
// are listed; any other code is ErrUnknownRequest.
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFD            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SendRARP            Request = 19
	NetSetMTU           Request = 20
	SetBackendReqFD     Request = 21
	IOTLBMsg            Request = 22
	SetVringEndian      Request = 23
	GetConfig           Request = 24
	SetConfig           Request = 25
	ResetDevice         Request = 34
	VringKick           Request = 35
	GetMaxMemSlots      Request = 36
	AddMemReg           Request = 37
	RemMemReg           Request = 38
	SetStatus           Request = 39
	GetStatus           Request = 40
	maxRequest          Request = 40
)

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER",
	ResetOwner: "RESET_OWNER", SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE",
	SetLogFD: "SET_LOG_FD", SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR",
	SetVringBase: "SET_VRING_BASE", GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK",
	SetVringCall: "SET_VRING_CALL", SetVringErr: "SET_VRING_ERR",
	GetProtocolFeatures: "GET_PROTOCOL_FEATURES", SetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE", SendRARP: "SEND_RARP",
	NetSetMTU: "NET_SET_MTU", SetBackendReqFD: "SET_BACKEND_REQ_FD", IOTLBMsg: "IOTLB_MSG",
	SetVringEndian: "SET_VRING_ENDIAN", GetConfig: "GET_CONFIG", SetConfig: "SET_CONFIG",
	ResetDevice: "RESET_DEVICE", VringKick: "VRING_KICK", GetMaxMemSlots: "GET_MAX_MEM_SLOTS",
	AddMemReg: "ADD_MEM_REG", RemMemReg: "REM_MEM_REG", SetStatus: "SET_STATUS", GetStatus: "GET_STATUS",
}

func (r Request) String() string {
	if s, ok := requestNames[r]; ok {
		return s
	}
	return fmt.Sprintf("REQUEST(%d)", uint32(r))
}

// Known reports whether r is a request this package can decode.
func (r Request) Known() bool { _, ok := requestNames[r]; return ok }

// Virtio feature bits with a vhost meaning (vhost-user.rst, "Feature bits").
const (
	// FProtocolFeatures: VHOST_USER_F_PROTOCOL_FEATURES, bit 30 of
	// GET_FEATURES; enables GET/SET_PROTOCOL_FEATURES and makes rings start
	// disabled until SET_VRING_ENABLE.
	FProtocolFeatures = 30
	// FLogAll: VHOST_F_LOG_ALL, bit 26: the frontend asks for dirty-page
	// logging (live migration).
	FLogAll = 26
)

// Protocol feature bits (vhost-user.rst, "Protocol features").
const (
	PFMQ                = 0
	PFLogSHMFD          = 1
	PFRARP              = 2
	PFReplyAck          = 3
	PFNetMTU            = 4
	PFBackendReq        = 5
	PFCrossEndian       = 6
	PFCryptoSession     = 7
	PFPagefault         = 8
	PFConfig            = 9
	PFBackendSendFD     = 10
	PFHostNotifier      = 11
	PFInflightSHMFD     = 12
	PFResetDevice       = 13
	PFInbandNotify      = 14
	PFConfigureMemSlots = 15
	PFStatus            = 16
)
