package vmm

import (
	"math/bits"
	"time"
)

// ACPI fixed hardware (ACPI 6.4 §4.8): the PM1a event and control blocks
// and the PM timer, in port I/O at pmBase. Writing SLP_TYP=S5 with SLP_EN
// to PM1a_CNT powers the machine off (what Linux's poweroff does).
const (
	pmBase    = 0x600
	pmSize    = 12
	pm1EvtOff = 0 // PM1_STS (2 bytes) then PM1_EN (2 bytes)
	pm1CntOff = 4 // PM1_CNT (2 bytes)
	pmTmrOff  = 8 // PM_TMR (4 bytes)
	pm1SCIEn  = 1 << 0
	pm1SlpEn  = 1 << 13
	slpTypS5  = 5
	pmTimerHz = 3579545
)

// pmDevice is the PM1a block and PM timer.
type pmDevice struct {
	start time.Time
	en    uint16
	cnt   uint16
	exit  func(status int, reason string)
}

func newPMDevice(exit func(int, string)) *pmDevice {
	return &pmDevice{start: time.Now(), cnt: pm1SCIEn, exit: exit}
}

// pmTicks is the PM timer's count after d: 3.579545 MHz ticks, modulo
// 2^32 as the 32-bit counter wraps. The product is 128 bits wide: in 64
// bits ns*3579545 overflowed after 86 minutes and the timer jumped.
func pmTicks(d time.Duration) uint32 {
	hi, lo := bits.Mul64(uint64(d), pmTimerHz)
	ticks, _ := bits.Div64(hi, lo, uint64(time.Second)) // hi < 1e9 for any Duration
	return uint32(ticks)
}

// PIORead implements PIODevice.
func (p *pmDevice) PIORead(off uint16, data []byte) {
	var v uint32
	switch {
	case off >= pmTmrOff:
		v = pmTicks(time.Since(p.start)) >> (8 * (off - pmTmrOff))
	case off >= pm1CntOff:
		v = uint32(p.cnt) >> (8 * (off - pm1CntOff))
	case off >= 2:
		v = uint32(p.en) >> (8 * (off - 2))
	}
	putN(data, v)
}

// PIOWrite implements PIODevice.
func (p *pmDevice) PIOWrite(off uint16, data []byte) {
	v := getN(data)
	switch {
	case off == 2 && len(data) >= 2:
		p.en = uint16(v)
	case off == pm1CntOff && len(data) >= 2:
		p.cnt = uint16(v) | pm1SCIEn
		if v&pm1SlpEn != 0 && (v>>10)&7 == slpTypS5 {
			p.exit(0, "ACPI power off")
		}
	}
}
