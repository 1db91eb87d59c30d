package ipfix

import (
	"encoding/binary"
	"fmt"
)

// A decoder of IPFIX messages written from RFC 7011 for the tests, sharing
// nothing with encode.go: it checks lengths and set structure as a
// collector would and returns the records by template.

type msgHeader struct {
	length        int
	exportTime    uint32
	seq           uint32
	domain        uint32
	dataRecords   int
	templateIDs   []uint16 // templates and options templates defined in it
	optionsScopes map[uint16]int
}

type decRecord struct {
	tmpl   uint16
	fields map[uint16][]byte // by IE id
}

func (r decRecord) u(ie uint16) uint64 {
	var v uint64
	for _, b := range r.fields[ie] {
		v = v<<8 | uint64(b)
	}
	return v
}

type decTemplate struct {
	ids, lens []uint16
	scope     int
}

type decoder struct {
	tmpls map[uint16]decTemplate
}

func newDecoder() *decoder { return &decoder{tmpls: map[uint16]decTemplate{}} }

func (d *decoder) decode(b []byte) (msgHeader, []decRecord, error) {
	var h msgHeader
	if len(b) < 16 {
		return h, nil, fmt.Errorf("message of %d bytes", len(b))
	}
	if v := binary.BigEndian.Uint16(b); v != 10 {
		return h, nil, fmt.Errorf("version %d", v)
	}
	h.length = int(binary.BigEndian.Uint16(b[2:]))
	if h.length != len(b) {
		return h, nil, fmt.Errorf("length field %d, datagram %d", h.length, len(b))
	}
	h.exportTime, h.seq, h.domain = binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	var recs []decRecord
	for p := b[16:]; len(p) > 0; {
		if len(p) < 4 {
			return h, nil, fmt.Errorf("%d bytes left, no set header", len(p))
		}
		id, l := binary.BigEndian.Uint16(p), int(binary.BigEndian.Uint16(p[2:]))
		if l < 4 || l > len(p) {
			return h, nil, fmt.Errorf("set %d length %d, %d left", id, l, len(p))
		}
		body := p[4:l]
		p = p[l:]
		switch {
		case id == 2 || id == 3:
			for len(body) >= 4 {
				tid, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
				body = body[4:]
				var t decTemplate
				if id == 3 {
					if len(body) < 2 {
						return h, nil, fmt.Errorf("options template %d: no scope count", tid)
					}
					t.scope = int(binary.BigEndian.Uint16(body))
					body = body[2:]
					if t.scope == 0 || t.scope > n {
						return h, nil, fmt.Errorf("options template %d: scope count %d of %d", tid, t.scope, n)
					}
				}
				for range n {
					if len(body) < 4 {
						return h, nil, fmt.Errorf("template %d truncated", tid)
					}
					ie, fl := binary.BigEndian.Uint16(body), binary.BigEndian.Uint16(body[2:])
					if ie&0x8000 != 0 {
						return h, nil, fmt.Errorf("template %d: enterprise element", tid)
					}
					t.ids, t.lens = append(t.ids, ie), append(t.lens, fl)
					body = body[4:]
				}
				if tid < 256 {
					return h, nil, fmt.Errorf("template id %d", tid)
				}
				d.tmpls[tid] = t
				h.templateIDs = append(h.templateIDs, tid)
			}
			if len(body) != 0 {
				return h, nil, fmt.Errorf("%d bytes after the templates of set %d", len(body), id)
			}
		case id >= 256:
			t, ok := d.tmpls[id]
			if !ok {
				return h, nil, fmt.Errorf("data set %d before its template", id)
			}
			for len(body) > 0 {
				r := decRecord{tmpl: id, fields: map[uint16][]byte{}}
				for i, ie := range t.ids {
					fl := int(t.lens[i])
					if fl == 65535 { // RFC 7011 §7
						if len(body) < 1 {
							return h, nil, fmt.Errorf("set %d: truncated length", id)
						}
						fl, body = int(body[0]), body[1:]
						if fl == 255 {
							if len(body) < 2 {
								return h, nil, fmt.Errorf("set %d: truncated length", id)
							}
							fl, body = int(binary.BigEndian.Uint16(body)), body[2:]
						}
					}
					if len(body) < fl {
						return h, nil, fmt.Errorf("set %d: record truncated at element %d (%d left, %d wanted)", id, ie, len(body), fl)
					}
					r.fields[ie], body = body[:fl], body[fl:]
				}
				recs = append(recs, r)
				h.dataRecords++
			}
		default:
			return h, nil, fmt.Errorf("set id %d", id)
		}
	}
	return h, recs, nil
}
