package ipfix

import (
	"encoding/binary"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

// IANA IPFIX Information Elements (https://www.iana.org/assignments/ipfix,
// RFC 7012 §4, RFC 5102) the templates carry.
const (
	ieOctetDeltaCount          = 1
	iePacketDeltaCount         = 2
	ieProtocolIdentifier       = 4
	ieTCPControlBits           = 6 // unsigned16 since RFC 7125
	ieSourceTransportPort      = 7
	ieSourceIPv4Address        = 8
	ieIngressInterface         = 10
	ieDestinationTransportPort = 11
	ieDestinationIPv4Address   = 12
	ieEgressInterface          = 14
	ieSourceIPv6Address        = 27
	ieDestinationIPv6Address   = 28
	ieICMPTypeCodeIPv4         = 32
	ieSamplingInterval         = 34 // deprecated for 305/306 (RFC 7270 §5.1) but what most collectors read
	ieSourceMacAddress         = 56
	ieVlanID                   = 58
	ieDestinationMacAddress    = 80
	ieInterfaceName            = 82
	ieFlowEndReason            = 136
	ieICMPTypeCodeIPv6         = 139
	ieObservationDomainID      = 149
	ieFlowStartMilliseconds    = 152
	ieFlowEndMilliseconds      = 153
	ieEthernetType             = 256
	ieSelectorID               = 302
	ieSelectorAlgorithm        = 304
	ieSamplingPacketInterval   = 305
	ieSamplingPacketSpace      = 306
	ieLayer2SegmentID          = 351
	ieLayer2OctetDeltaCount    = 352
)

// Set IDs (RFC 7011 §3.3.2) and the templates' IDs (256 and up).
const (
	setTemplate        = 2
	setOptionsTemplate = 3
	tmplIPv4           = 256
	tmplIPv6           = 257
	tmplL2             = 258
	tmplSampling       = 259 // options: samplingInterval for the observation domain
	tmplSelector       = 260 // options: the PSAMP Selector Report (RFC 5476 §6.5.2)
	tmplInterfaces     = 261 // options: interfaceName by ingressInterface
)

// varLen is the field length of a variable-length element (RFC 7011 §7).
const varLen = 65535

// selectorAlgorithm 1: systematic count-based sampling (IANA PSAMP
// parameters, RFC 5475 §5.1), which the switch does.
const selCountBased = 1

// field is a Field Specifier (RFC 7011 §3.2), IANA's (enterprise bit 0).
type field struct{ id, length uint16 }

var (
	// common leads every flow template: times, counts, ports, L2.
	common = []field{
		{ieFlowStartMilliseconds, 8}, {ieFlowEndMilliseconds, 8},
		{iePacketDeltaCount, 8}, {ieOctetDeltaCount, 8}, {ieLayer2OctetDeltaCount, 8},
		{ieIngressInterface, 4}, {ieEgressInterface, 4},
		{ieSourceMacAddress, 6}, {ieDestinationMacAddress, 6}, {ieVlanID, 2}, {ieLayer2SegmentID, 8},
	}
	ipv4 = append(append([]field(nil), common...),
		field{ieSourceIPv4Address, 4}, field{ieDestinationIPv4Address, 4}, field{ieProtocolIdentifier, 1},
		field{ieSourceTransportPort, 2}, field{ieDestinationTransportPort, 2}, field{ieICMPTypeCodeIPv4, 2},
		field{ieTCPControlBits, 2}, field{ieFlowEndReason, 1})
	ipv6 = append(append([]field(nil), common...),
		field{ieSourceIPv6Address, 16}, field{ieDestinationIPv6Address, 16}, field{ieProtocolIdentifier, 1},
		field{ieSourceTransportPort, 2}, field{ieDestinationTransportPort, 2}, field{ieICMPTypeCodeIPv6, 2},
		field{ieTCPControlBits, 2}, field{ieFlowEndReason, 1})
	l2 = append(append([]field(nil), common...), field{ieEthernetType, 2}, field{ieFlowEndReason, 1})

	// Options templates: scope fields first (RFC 7011 §3.4.2.2).
	samplingScope  = []field{{ieObservationDomainID, 4}}
	sampling       = []field{{ieSamplingInterval, 4}}
	selectorScope  = []field{{ieSelectorID, 8}}
	selector       = []field{{ieSelectorAlgorithm, 2}, {ieSamplingPacketInterval, 4}, {ieSamplingPacketSpace, 4}}
	interfaceScope = []field{{ieIngressInterface, 4}}
	interfaces     = []field{{ieInterfaceName, varLen}}
)

func recordLen(fs []field) int {
	n := 0
	for _, f := range fs {
		n += int(f.length)
	}
	return n
}

// Record lengths of the flow templates.
var (
	lenIPv4, lenIPv6, lenL2 = recordLen(ipv4), recordLen(ipv6), recordLen(l2)
)

const (
	headerLen = 16 // RFC 7011 §3.1
	setHdrLen = 4  // §3.3.2
	version   = 10
)

// encoder builds IPFIX Messages (RFC 7011 §3) into one reused buffer: a
// message header, then sets, each a header and records. Nothing it does
// allocates once the buffer has grown to the largest message.
type encoder struct {
	buf    []byte
	max    int // message size bound
	set    int // offset of the open set's header; -1: none
	setID  uint16
	domain uint32
	seq    uint32 // data records sent before the message being built (RFC 7011 §3.1)
	recs   uint32 // data records in the message being built
}

func newEncoder(maxLen int, domain uint32) *encoder {
	return &encoder{buf: make([]byte, 0, maxLen), max: maxLen, set: -1, domain: domain}
}

// begin starts a message exported at t.
func (e *encoder) begin(t time.Time) {
	e.buf = e.buf[:headerLen]
	binary.BigEndian.PutUint16(e.buf[0:], version)
	binary.BigEndian.PutUint32(e.buf[4:], uint32(t.Unix()))
	binary.BigEndian.PutUint32(e.buf[8:], e.seq)
	binary.BigEndian.PutUint32(e.buf[12:], e.domain)
	e.set, e.recs = -1, 0
}

// empty: the message has no set yet.
func (e *encoder) empty() bool { return len(e.buf) == headerLen }

// closeSet writes the open set's length.
func (e *encoder) closeSet() {
	if e.set >= 0 {
		binary.BigEndian.PutUint16(e.buf[e.set+2:], uint16(len(e.buf)-e.set))
		e.set = -1
	}
}

// fits says whether a record of n bytes of set id fits in the message
// (with a new set header if it is not the open set).
func (e *encoder) fits(id uint16, n int) bool {
	if e.set < 0 || e.setID != id {
		n += setHdrLen
	}
	return len(e.buf)+n <= e.max
}

// record opens set id if it is not the open one; the caller appends the
// record. data says whether it is a Data Record (counted in the sequence
// number) rather than a template.
func (e *encoder) record(id uint16, data bool) {
	if e.set < 0 || e.setID != id {
		e.closeSet()
		e.set, e.setID = len(e.buf), id
		e.buf = append(e.buf, byte(id>>8), byte(id), 0, 0)
	}
	if data {
		e.recs++
	}
}

// finish closes the message and returns it; the sequence number moves on
// by its data records.
func (e *encoder) finish() []byte {
	e.closeSet()
	binary.BigEndian.PutUint16(e.buf[2:], uint16(len(e.buf)))
	e.seq += e.recs
	return e.buf
}

func templateLen(scope, fs []field) int {
	n := 4 + 4*(len(scope)+len(fs))
	if scope != nil {
		n += 2
	}
	return n
}

// template appends a Template Record (§3.4.1), or an Options Template
// Record (§3.4.2.2) when scope is not nil.
func (e *encoder) template(id uint16, scope, fs []field) {
	set := uint16(setTemplate)
	if scope != nil {
		set = setOptionsTemplate
	}
	e.record(set, false)
	e.buf = binary.BigEndian.AppendUint16(e.buf, id)
	e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(scope)+len(fs)))
	if scope != nil {
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(scope)))
	}
	for _, l := range [2][]field{scope, fs} {
		for _, f := range l {
			e.buf = binary.BigEndian.AppendUint16(e.buf, f.id)
			e.buf = binary.BigEndian.AppendUint16(e.buf, f.length)
		}
	}
}

// segmentID is layer2SegmentId (IE 351): the top byte the overlay's type
// (0x01 VXLAN), the low three bytes its segment, the VNI; 0: none.
func segmentID(vni uint32) uint64 {
	if vni == 0 {
		return 0
	}
	return 1<<56 | uint64(vni&0xffffff)
}

// flowTemplate is the template a record goes in and its length.
func flowTemplate(r *vswitch.FlowRecord) (uint16, int) {
	switch r.IPVersion {
	case 4:
		return tmplIPv4, lenIPv4
	case 6:
		return tmplIPv6, lenIPv6
	}
	return tmplL2, lenL2
}

// flow appends r as a Data Record of its template (the caller checked
// fits). ms converts the switch's clock to milliseconds since the Unix
// epoch; vni is the VXLAN segment of the flow (0: none).
func (e *encoder) flow(r *vswitch.FlowRecord, ms func(int64) uint64, vni uint32) {
	id, _ := flowTemplate(r)
	e.record(id, true)
	b := e.buf
	b = binary.BigEndian.AppendUint64(b, ms(r.Start))
	b = binary.BigEndian.AppendUint64(b, ms(r.End))
	b = binary.BigEndian.AppendUint64(b, r.Packets)
	b = binary.BigEndian.AppendUint64(b, r.L3Bytes)
	b = binary.BigEndian.AppendUint64(b, r.Bytes)
	b = binary.BigEndian.AppendUint32(b, r.InIndex)
	b = binary.BigEndian.AppendUint32(b, r.OutIndex)
	b = append(b, r.SrcMAC[:]...)
	b = append(b, r.DstMAC[:]...)
	b = binary.BigEndian.AppendUint16(b, r.VLAN)
	b = binary.BigEndian.AppendUint64(b, segmentID(vni))
	switch id {
	case tmplL2:
		b = binary.BigEndian.AppendUint16(b, r.EtherType)
		b = append(b, byte(r.EndReason))
		e.buf = b
		return
	case tmplIPv4:
		s, d := r.SrcIP.As4(), r.DstIP.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	default:
		s, d := r.SrcIP.As16(), r.DstIP.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	b = append(b, r.Proto)
	b = binary.BigEndian.AppendUint16(b, r.SrcPort)
	b = binary.BigEndian.AppendUint16(b, r.DstPort)
	b = binary.BigEndian.AppendUint16(b, r.ICMPTypeCode)
	b = binary.BigEndian.AppendUint16(b, r.TCPFlags)
	b = append(b, byte(r.EndReason))
	e.buf = b
}

// templates appends every template (they fit in any message of 512
// bytes or more).
func (e *encoder) templates() {
	e.template(tmplIPv4, nil, ipv4)
	e.template(tmplIPv6, nil, ipv6)
	e.template(tmplL2, nil, l2)
	e.template(tmplSampling, samplingScope, sampling)
	e.template(tmplSelector, selectorScope, selector)
	e.template(tmplInterfaces, interfaceScope, interfaces)
}

// templatesLen is the room templates takes.
var templatesLen = 2*setHdrLen + templateLen(nil, ipv4) + templateLen(nil, ipv6) + templateLen(nil, l2) +
	templateLen(samplingScope, sampling) + templateLen(selectorScope, selector) + templateLen(interfaceScope, interfaces)

// samplingLen is the room samplingData takes.
const samplingLen = 2*setHdrLen + 4 + 4 + 8 + 2 + 4 + 4

// samplingData appends the sampling options' Data Records: the
// observation domain's samplingInterval (what nfdump and most collectors
// scale by) and the PSAMP Selector Report of selector 1 (systematic
// count-based: 1 packet selected, n-1 skipped).
func (e *encoder) samplingData(n uint32) {
	e.record(tmplSampling, true)
	e.buf = binary.BigEndian.AppendUint32(e.buf, e.domain)
	e.buf = binary.BigEndian.AppendUint32(e.buf, n)
	e.record(tmplSelector, true)
	e.buf = binary.BigEndian.AppendUint64(e.buf, 1)
	e.buf = binary.BigEndian.AppendUint16(e.buf, selCountBased)
	e.buf = binary.BigEndian.AppendUint32(e.buf, 1)
	e.buf = binary.BigEndian.AppendUint32(e.buf, n-1)
}

// maxNameLen bounds an exported interface name (a port name is at most
// 64 bytes through the API).
const maxNameLen = 254

// interfaceLen is the room interface takes for a name.
func interfaceLen(name string) int { return 4 + 1 + min(len(name), maxNameLen) }

// interface appends an interface options Data Record: the port's number
// and its name (variable length, RFC 7011 §7: one length byte).
func (e *encoder) iface(index uint32, name string) {
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	e.record(tmplInterfaces, true)
	e.buf = binary.BigEndian.AppendUint32(e.buf, index)
	e.buf = append(e.buf, byte(len(name)))
	e.buf = append(e.buf, name...)
}
