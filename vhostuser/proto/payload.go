package proto

import "encoding/binary"

// VringState is struct vhost_vring_state (SET_VRING_NUM, SET_VRING_BASE,
// GET_VRING_BASE, SET_VRING_ENABLE).
type VringState struct {
	Index, Num uint32
}

// VringAddr is struct vhost_vring_addr (SET_VRING_ADDR). Desc, Used and
// Avail are frontend user virtual addresses; Log is a guest-physical
// address.
type VringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

// MemRegion is struct vhost_memory_region.
type MemRegion struct {
	GPA, Size, UVA, MmapOffset uint64
}

// LogDesc is the SET_LOG_BASE payload: the size and offset of the shared
// log in the descriptor that comes with it.
type LogDesc struct {
	Size, Offset uint64
}

// Config is the GET_CONFIG / SET_CONFIG payload.
type Config struct {
	Offset, Size, Flags uint32
	Data                []byte
}

// U64 decodes a u64 payload (callers validated the size).
func U64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// PutU64 encodes v.
func PutU64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// DecodeVringState decodes an 8-byte payload.
func DecodeVringState(b []byte) VringState {
	if len(b) < 8 {
		return VringState{}
	}
	return VringState{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])}
}

// Encode encodes s.
func (s VringState) Encode() []byte {
	b := binary.LittleEndian.AppendUint32(nil, s.Index)
	return binary.LittleEndian.AppendUint32(b, s.Num)
}

// DecodeVringAddr decodes a 40-byte payload.
func DecodeVringAddr(b []byte) VringAddr {
	if len(b) < 40 {
		return VringAddr{}
	}
	le := binary.LittleEndian
	return VringAddr{le.Uint32(b), le.Uint32(b[4:]), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:]), le.Uint64(b[32:])}
}

// Encode encodes a.
func (a VringAddr) Encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, a.Index)
	b = le.AppendUint32(b, a.Flags)
	for _, v := range []uint64{a.Desc, a.Used, a.Avail, a.Log} {
		b = le.AppendUint64(b, v)
	}
	return b
}

func decodeRegion(b []byte) MemRegion {
	le := binary.LittleEndian
	return MemRegion{le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:])}
}

func (r MemRegion) append(b []byte) []byte {
	for _, v := range []uint64{r.GPA, r.Size, r.UVA, r.MmapOffset} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// DecodeMemTable decodes a SET_MEM_TABLE payload (Validate checked its size).
func DecodeMemTable(b []byte) []MemRegion {
	if len(b) < 8 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	var rs []MemRegion
	for i := 0; i < n && 8+32*(i+1) <= len(b); i++ {
		rs = append(rs, decodeRegion(b[8+32*i:]))
	}
	return rs
}

// EncodeMemTable encodes a SET_MEM_TABLE payload.
func EncodeMemTable(rs []MemRegion) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(rs)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range rs {
		b = r.append(b)
	}
	return b
}

// DecodeMemReg decodes an ADD_MEM_REG / REM_MEM_REG payload (u64 padding,
// one region).
func DecodeMemReg(b []byte) MemRegion {
	if len(b) < 40 {
		return MemRegion{}
	}
	return decodeRegion(b[8:])
}

// EncodeMemReg encodes an ADD_MEM_REG / REM_MEM_REG payload.
func EncodeMemReg(r MemRegion) []byte { return r.append(make([]byte, 8)) }

// DecodeLog decodes a SET_LOG_BASE payload.
func DecodeLog(b []byte) LogDesc {
	if len(b) < 16 {
		return LogDesc{}
	}
	return LogDesc{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

// Encode encodes l.
func (l LogDesc) Encode() []byte {
	b := binary.LittleEndian.AppendUint64(nil, l.Size)
	return binary.LittleEndian.AppendUint64(b, l.Offset)
}

// DecodeConfig decodes a GET_CONFIG / SET_CONFIG payload; Data aliases b.
func DecodeConfig(b []byte) Config {
	if len(b) < 12 {
		return Config{}
	}
	le := binary.LittleEndian
	c := Config{Offset: le.Uint32(b), Size: le.Uint32(b[4:]), Flags: le.Uint32(b[8:])}
	if int(c.Size) <= len(b)-12 {
		c.Data = b[12 : 12+c.Size]
	}
	return c
}

// Encode encodes c (Size is taken from Data).
func (c Config) Encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, c.Offset)
	b = le.AppendUint32(b, uint32(len(c.Data)))
	b = le.AppendUint32(b, c.Flags)
	return append(b, c.Data...)
}
