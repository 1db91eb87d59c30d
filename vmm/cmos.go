package vmm

import "time"

// CMOS is the MC146818 real-time clock behind ports 0x70/0x71, enough for
// Linux to read the wall-clock time at boot (24-hour BCD mode, never in an
// update cycle). Other CMOS bytes read as zero and writes are ignored.
type CMOS struct {
	index byte
	now   func() time.Time
}

func bcd(v int) byte { return byte(v/10<<4 | v%10) }

// PIORead implements PIODevice.
func (c *CMOS) PIORead(off uint16, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if off != 1 || len(data) == 0 {
		return
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := now().UTC()
	var v byte
	switch c.index & 0x7f {
	case 0x00:
		v = bcd(t.Second())
	case 0x02:
		v = bcd(t.Minute())
	case 0x04:
		v = bcd(t.Hour())
	case 0x06:
		v = byte(t.Weekday()) + 1
	case 0x07:
		v = bcd(t.Day())
	case 0x08:
		v = bcd(int(t.Month()))
	case 0x09:
		v = bcd(t.Year() % 100)
	case 0x32:
		v = bcd(t.Year() / 100)
	case 0x0a:
		v = 0x26 // UIP clear, 32.768 kHz time base, 1024 Hz rate
	case 0x0b:
		v = 0x02 // 24-hour, BCD
	case 0x0d:
		v = 0x80 // valid RAM and time
	}
	data[0] = v
}

// PIOWrite implements PIODevice.
func (c *CMOS) PIOWrite(off uint16, data []byte) {
	if off == 0 && len(data) > 0 {
		c.index = data[0]
	}
}

// exitDevice is the paravirtual exit port and the i8042 reset line: both
// end the machine.
type exitDevice struct {
	exit func(status int, reason string)
}

// PIORead implements PIODevice: the i8042 status port reads 0 (no data,
// input buffer empty) so that Linux's reset sequence proceeds.
func (d *exitDevice) PIORead(off uint16, data []byte) {
	for i := range data {
		data[i] = 0
	}
}

// PIOWrite implements PIODevice.
func (d *exitDevice) PIOWrite(off uint16, data []byte) {}

type exitPort struct{ *exitDevice }

func (p exitPort) PIOWrite(off uint16, data []byte) {
	if len(data) > 0 {
		p.exit(int(data[0]), "exit port")
	}
}

type i8042 struct{ *exitDevice }

// PIOWrite implements PIODevice: command 0xfe on port 0x64 pulses the
// reset line, which is how Linux reboots with reboot=k.
func (k i8042) PIOWrite(off uint16, data []byte) {
	if off == i8042Cmd-i8042Data && len(data) > 0 && data[0] == 0xfe {
		k.exit(0, "i8042 reset")
	}
}
