package bond

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LACPDUs (IEEE 802.1AX-2014 §6.4.2.3): Slow Protocols frames to the
// group address 01-80-C2-00-00-02, EtherType 0x8809, subtype 1.

// SlowProtocolsType is the Slow Protocols EtherType.
const SlowProtocolsType = 0x8809

// SlowProtocolsDst is the Slow Protocols multicast address, which
// bridges do not forward.
var SlowProtocolsDst = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

const (
	subtypeLACP   = 1
	lacpVersion   = 1
	tlvActor      = 1
	tlvPartner    = 2
	tlvCollector  = 3
	tlvTerminator = 0
	infoLen       = 20 // an actor or partner information TLV
	collectorLen  = 16
	// lacpduLen is a version 1 LACPDU after the Ethernet header: subtype,
	// version, actor, partner, collector, terminator, 50 reserved bytes.
	lacpduLen = 2 + infoLen + infoLen + collectorLen + 2 + 50
	// FrameLen is a whole LACPDU frame without FCS: 124 bytes (the
	// minimum Ethernet frame is 60).
	FrameLen = 14 + lacpduLen
)

// State is a port's LACP state octet (§6.4.2.3 c, ActorState bits).
type State uint8

// The state bits.
const (
	StateActivity      State = 1 << 0 // active LACP (sends without being asked)
	StateShortTimeout  State = 1 << 1 // asks the partner for the fast rate
	StateAggregation   State = 1 << 2 // the link may be aggregated
	StateSync          State = 1 << 3 // in the right aggregator
	StateCollecting    State = 1 << 4
	StateDistributing  State = 1 << 5
	StateDefaulted     State = 1 << 6 // partner information is the defaults
	StateExpired       State = 1 << 7 // the receive machine is in EXPIRED
	stateAllBits       State = 0xff
	stateSelectionBits       = StateAggregation // bits that select an aggregator
)

// String lists the set bits, as Linux's bonding sysfs does.
func (s State) String() string {
	names := []string{"activity", "short_timeout", "aggregation", "sync", "collecting", "distributing", "defaulted", "expired"}
	var b []byte
	for i, n := range names {
		if s&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// PortInfo is an actor's or partner's information (§6.4.2.3 d..k).
type PortInfo struct {
	SystemPriority uint16
	System         [6]byte // the system ID: a MAC
	Key            uint16  // the operational key: links with one key may aggregate
	PortPriority   uint16
	Port           uint16
	State          State
}

// LACPDU is a decoded LACPDU's fields that a version 1 receiver uses.
type LACPDU struct {
	Actor, Partner    PortInfo
	CollectorMaxDelay uint16 // tens of microseconds
}

// Errors of DecodeLACPDU: what was wrong, for the counters.
var (
	ErrShort    = errors.New("shorter than a LACPDU")
	ErrSubtype  = errors.New("not a LACPDU (Slow Protocols subtype other than 1)")
	ErrVersion  = errors.New("LACP version 0")
	ErrTLV      = errors.New("an information TLV with the wrong type or length")
	ErrBadActor = errors.New("actor information that cannot be a partner's (zero system or port)")
)

// DecodeLACPDU decodes the payload of a Slow Protocols frame (after the
// EtherType). Versions above 1 are read as version 1 (§6.4.2.3: a
// receiver ignores what it does not know). It reads b once, field by
// field, into the returned value.
func DecodeLACPDU(b []byte) (LACPDU, error) {
	var d LACPDU
	// A version 1 LACPDU is 110 bytes; the reserved tail may be cut by a
	// sender that pads differently, but the TLVs must all be there.
	if len(b) < 2+infoLen+infoLen+collectorLen+2 {
		return d, ErrShort
	}
	if b[0] != subtypeLACP {
		return d, ErrSubtype
	}
	if b[1] == 0 {
		return d, ErrVersion
	}
	off := 2
	for _, want := range []struct {
		typ, ln byte
		info    *PortInfo
	}{{tlvActor, infoLen, &d.Actor}, {tlvPartner, infoLen, &d.Partner}, {tlvCollector, collectorLen, nil}} {
		if b[off] != want.typ || b[off+1] != want.ln {
			return d, fmt.Errorf("%w: type %d length %d at offset %d", ErrTLV, b[off], b[off+1], off)
		}
		t := b[off : off+int(want.ln)]
		if want.info != nil {
			*want.info = getInfo(t)
		} else {
			d.CollectorMaxDelay = binary.BigEndian.Uint16(t[2:])
		}
		off += int(want.ln)
	}
	if b[off] != tlvTerminator || b[off+1] != 0 {
		return d, fmt.Errorf("%w: no terminator at offset %d", ErrTLV, off)
	}
	if d.Actor.System == ([6]byte{}) || d.Actor.Port == 0 || d.Actor.System[0]&1 != 0 {
		return d, ErrBadActor
	}
	return d, nil
}

func getInfo(t []byte) PortInfo {
	return PortInfo{
		SystemPriority: binary.BigEndian.Uint16(t[2:]),
		System:         [6]byte(t[4:10]),
		Key:            binary.BigEndian.Uint16(t[10:]),
		PortPriority:   binary.BigEndian.Uint16(t[12:]),
		Port:           binary.BigEndian.Uint16(t[14:]),
		State:          State(t[16]),
	}
}

func putInfo(t []byte, typ byte, p PortInfo) {
	t[0], t[1] = typ, infoLen
	binary.BigEndian.PutUint16(t[2:], p.SystemPriority)
	copy(t[4:10], p.System[:])
	binary.BigEndian.PutUint16(t[10:], p.Key)
	binary.BigEndian.PutUint16(t[12:], p.PortPriority)
	binary.BigEndian.PutUint16(t[14:], p.Port)
	t[16] = byte(p.State)
	clear(t[17:20])
}

// AppendFrame appends a whole LACPDU frame from the member's MAC src.
func (d *LACPDU) AppendFrame(b []byte, src [6]byte) []byte {
	n := len(b)
	b = append(b, make([]byte, FrameLen)...)
	f := b[n:]
	copy(f[0:6], SlowProtocolsDst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], SlowProtocolsType)
	p := f[14:]
	p[0], p[1] = subtypeLACP, lacpVersion
	putInfo(p[2:], tlvActor, d.Actor)
	putInfo(p[2+infoLen:], tlvPartner, d.Partner)
	c := p[2+2*infoLen:]
	c[0], c[1] = tlvCollector, collectorLen
	binary.BigEndian.PutUint16(c[2:], d.CollectorMaxDelay)
	// The terminator and the reserved bytes stay zero.
	return b
}

// IsSlowProtocols reports whether an Ethernet frame (untagged: Slow
// Protocols frames are never tagged) is a Slow Protocols frame.
func IsSlowProtocols(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:]) == SlowProtocolsType
}
