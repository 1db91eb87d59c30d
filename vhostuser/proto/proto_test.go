package proto

import (
	"errors"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	a := VringAddr{Index: 1, Flags: VringFLog, Desc: 0x1000, Used: 0x3000, Avail: 0x2000, Log: 0x4000}
	if got := DecodeVringAddr(a.Encode()); got != a {
		t.Errorf("DecodeVringAddr(Encode(%+v)) = %+v", a, got)
	}
	s := VringState{Index: 3, Num: 256}
	if got := DecodeVringState(s.Encode()); got != s {
		t.Errorf("DecodeVringState = %+v, want %+v", got, s)
	}
	rs := []MemRegion{{GPA: 0, Size: 1 << 20, UVA: 0x7f0000000000, MmapOffset: 0}, {GPA: 1 << 32, Size: 4096, UVA: 1, MmapOffset: 8192}}
	got := DecodeMemTable(EncodeMemTable(rs))
	if len(got) != 2 || got[0] != rs[0] || got[1] != rs[1] {
		t.Errorf("DecodeMemTable = %+v, want %+v", got, rs)
	}
	if r := DecodeMemReg(EncodeMemReg(rs[1])); r != rs[1] {
		t.Errorf("DecodeMemReg = %+v", r)
	}
	c := DecodeConfig(Config{Offset: 6, Data: []byte{1, 0}}.Encode())
	if c.Offset != 6 || c.Size != 2 || len(c.Data) != 2 {
		t.Errorf("DecodeConfig = %+v", c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Msg
		want error
	}{
		{"ok", Msg{Header: Header{Request: SetFeatures, Size: 8}, Payload: make([]byte, 8)}, nil},
		{"short", Msg{Header: Header{Request: SetFeatures, Size: 4}, Payload: make([]byte, 4)}, ErrSize},
		{"unknown", Msg{Header: Header{Request: 77}}, ErrUnknownRequest},
		{"extra fd", Msg{Header: Header{Request: GetFeatures}, FDs: []int{5}}, ErrFDs},
		{"mem table fds", Msg{Header: Header{Request: SetMemTable, Size: 40}, Payload: EncodeMemTable([]MemRegion{{Size: 1}})}, ErrFDs},
		{"mem table count", Msg{Header: Header{Request: SetMemTable, Size: 8}, Payload: make([]byte, 8), FDs: []int{5}}, ErrPayload},
		{"nofd kick", Msg{Header: Header{Request: SetVringKick, Size: 8}, Payload: PutU64(VringNoFD)}, nil},
		{"nofd kick with fd", Msg{Header: Header{Request: SetVringKick, Size: 8}, Payload: PutU64(VringNoFD), FDs: []int{5}}, ErrFDs},
		{"kick bits", Msg{Header: Header{Request: SetVringKick, Size: 8}, Payload: PutU64(1 << 20), FDs: []int{5}}, ErrPayload},
		{"config size", Msg{Header: Header{Request: GetConfig, Size: 12}, Payload: Config{Data: make([]byte, 4)}.Encode()[:12]}, ErrSize},
	} {
		err := Validate(&tc.m)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Validate = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestDecodeHeader(t *testing.T) {
	var b [HeaderSize]byte
	Header{Request: GetFeatures, Flags: Version, Size: 0}.Encode(b[:])
	if _, err := DecodeHeader(b[:]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h    Header
		want error
	}{
		{Header{Request: GetFeatures, Flags: 2}, ErrVersion},
		{Header{Request: GetFeatures, Flags: Version | 1<<7}, ErrFlags},
		{Header{Request: GetFeatures, Flags: Version, Size: MaxPayload + 1}, ErrTooBig},
	} {
		tc.h.Encode(b[:])
		if _, err := DecodeHeader(b[:]); !errors.Is(err, tc.want) {
			t.Errorf("DecodeHeader(%+v) = %v, want %v", tc.h, err, tc.want)
		}
	}
}
