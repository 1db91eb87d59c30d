package vmm

import (
	"bytes"
	"testing"
)

// uart is a Serial under test with its output and interrupt count.
type uart struct {
	*Serial
	out  bytes.Buffer
	irqs int
}

func newUART(t *testing.T) *uart {
	t.Helper()
	u := &uart{}
	u.Serial = NewSerial(&u.out, func() { u.irqs++ })
	return u
}

func (u *uart) in(off uint16) byte {
	b := []byte{0xaa}
	u.PIORead(off, b)
	return b[0]
}

func (u *uart) outb(off uint16, v byte) { u.PIOWrite(off, []byte{v}) }

// irqsSince returns the interrupts raised since the last call.
func (u *uart) irqsSince() int {
	n := u.irqs
	u.irqs = 0
	return n
}

func TestSerialOutput(t *testing.T) {
	u := newUART(t)
	for _, c := range []byte("hi\n") {
		u.outb(uartRBR, c)
	}
	if got, want := u.out.String(), "hi\n"; got != want {
		t.Errorf("output after THR writes = %q, want %q", got, want)
	}
	if got := u.irqsSince(); got != 0 {
		t.Errorf("%d interrupts with IER 0, want 0", got)
	}
	if got, want := u.in(uartLSR), byte(lsrTHRE|lsrTEMT); got != want {
		t.Errorf("LSR = %#x, want %#x (THRE|TEMT, no data)", got, want)
	}
	if got, want := u.in(uartIIR), byte(iirNone); got != want {
		t.Errorf("IIR = %#x, want %#x (no interrupt)", got, want)
	}
	// A wider access fills the rest with zeros.
	w := []byte{0xaa, 0xaa}
	u.PIORead(uartLSR, w)
	if w[0] != lsrTHRE|lsrTEMT || w[1] != 0 {
		t.Errorf("2-byte LSR read = % x, want %02x 00", w, lsrTHRE|lsrTEMT)
	}
	u.PIOWrite(uartRBR, nil) // an empty write is ignored
	if u.out.Len() != 3 {
		t.Errorf("output after an empty write = %q", u.out.String())
	}
	// A nil writer discards.
	NewSerial(nil, nil).PIOWrite(uartRBR, []byte{'x'})
}

func TestSerialTHRInterrupt(t *testing.T) {
	u := newUART(t)
	u.outb(uartIER, ierTHRI)
	if got := u.irqsSince(); got != 1 {
		t.Errorf("enabling THRI raised %d interrupts, want 1", got)
	}
	if got, want := u.in(uartIER), byte(ierTHRI); got != want {
		t.Errorf("IER = %#x, want %#x", got, want)
	}
	if got, want := u.in(uartIIR), byte(iirTHRI); got != want {
		t.Errorf("IIR = %#x, want %#x (THRI pending)", got, want)
	}
	if got, want := u.in(uartIIR), byte(iirNone); got != want {
		t.Errorf("second IIR = %#x, want %#x (reading IIR clears THRI)", got, want)
	}
	u.outb(uartIER, ierTHRI) // already enabled: no new edge
	if got := u.irqsSince(); got != 0 {
		t.Errorf("rewriting IER raised %d interrupts, want 0", got)
	}
	u.outb(uartRBR, 'x')
	if got := u.irqsSince(); got != 1 {
		t.Errorf("THR write with THRI raised %d interrupts, want 1", got)
	}
	if got, want := u.in(uartIIR), byte(iirTHRI); got != want {
		t.Errorf("IIR after a THR write = %#x, want %#x", got, want)
	}
	u.outb(uartIER, 0)
	u.outb(uartRBR, 'y')
	if got := u.irqsSince(); got != 0 {
		t.Errorf("THR write with IER 0 raised %d interrupts, want 0", got)
	}
	if got, want := u.in(uartIIR), byte(iirNone); got != want {
		t.Errorf("IIR with IER 0 = %#x, want %#x", got, want)
	}
	u.outb(uartIER, 0xff)
	if got, want := u.in(uartIER), byte(0x0f); got != want {
		t.Errorf("IER after writing 0xff = %#x, want %#x (4 bits)", got, want)
	}
}

func TestSerialDivisorLatch(t *testing.T) {
	u := newUART(t)
	u.outb(uartLCR, lcrDLAB|0x03)
	if got, want := u.in(uartRBR), byte(0x0c); got != want {
		t.Errorf("DLL at reset = %#x, want %#x (9600 baud)", got, want)
	}
	u.outb(uartRBR, 0x01) // 115200 baud
	u.outb(uartIER, 0x00)
	if got, want := u.in(uartRBR), byte(0x01); got != want {
		t.Errorf("DLL = %#x, want %#x", got, want)
	}
	if got, want := u.in(uartIER), byte(0x00); got != want {
		t.Errorf("DLM = %#x, want %#x", got, want)
	}
	u.outb(uartIER, 0x12)
	if got, want := u.in(uartIER), byte(0x12); got != want {
		t.Errorf("DLM = %#x, want %#x", got, want)
	}
	if u.out.Len() != 0 || u.irqsSince() != 0 {
		t.Errorf("divisor writes produced output %q / interrupts", u.out.String())
	}
	if got, want := u.in(uartLCR), byte(lcrDLAB|0x03); got != want {
		t.Errorf("LCR = %#x, want %#x", got, want)
	}
	u.outb(uartLCR, 0x03)
	if got := u.in(uartIER); got != 0 {
		t.Errorf("IER after clearing DLAB = %#x, want 0 (DLM writes don't reach IER)", got)
	}
	u.outb(uartRBR, 'z')
	if got, want := u.out.String(), "z"; got != want {
		t.Errorf("output after clearing DLAB = %q, want %q", got, want)
	}
	u.outb(uartSCR, 0x5a)
	if got := u.in(uartSCR); got != 0x5a {
		t.Errorf("SCR = %#x, want 0x5a", got)
	}
}

func TestSerialLoopback(t *testing.T) {
	u := newUART(t)
	// Linux's 8250 autoconfig: MCR = LOOP|OUT2|RTS, then MSR & 0xf0
	// must be DCD|CTS (drivers/tty/serial/8250/8250_port.c).
	for _, tc := range []struct {
		mcr, want byte
	}{
		{mcrLoop | 0x0a, msrDCD | msrCTS},
		{mcrLoop, 0},
		{mcrLoop | 0x01, msrDSR},
		{mcrLoop | 0x02, msrCTS},
		{mcrLoop | 0x04, msrRI},
		{mcrLoop | 0x08, msrDCD},
		{mcrLoop | 0x0f, 0xf0},
		{0x0a, msrDCD | msrDSR | msrCTS}, // not in loopback: carrier, DSR, CTS up
		{0x00, msrDCD | msrDSR | msrCTS},
	} {
		u.outb(uartMCR, tc.mcr)
		if got := u.in(uartMSR) & 0xf0; got != tc.want {
			t.Errorf("MCR %#x: MSR & 0xf0 = %#x, want %#x", tc.mcr, got, tc.want)
		}
		if got := u.in(uartMCR); got != tc.mcr {
			t.Errorf("MCR = %#x, want %#x", got, tc.mcr)
		}
	}
	u.outb(uartMCR, 0xff)
	if got := u.in(uartMCR); got != 0x1f {
		t.Errorf("MCR after writing 0xff = %#x, want 0x1f", got)
	}

	u.outb(uartMCR, mcrLoop|0x0a)
	u.irqsSince()
	u.outb(uartRBR, 'A')
	u.outb(uartRBR, 'B')
	if u.out.Len() != 0 {
		t.Errorf("loopback THR writes reached the output: %q", u.out.String())
	}
	if got := u.irqsSince(); got != 0 {
		t.Errorf("loopback THR writes with IER 0 raised %d interrupts", got)
	}
	if got := u.in(uartLSR); got&lsrDR == 0 {
		t.Errorf("LSR = %#x after a loopback write, want DR", got)
	}
	u.outb(uartIER, ierRDI)
	if got := u.irqsSince(); got != 1 {
		t.Errorf("enabling RDI with data waiting raised %d interrupts, want 1", got)
	}
	if got, want := u.in(uartIIR), byte(iirRDI); got != want {
		t.Errorf("IIR with received data = %#x, want %#x", got, want)
	}
	for _, want := range []byte("AB") {
		if got := u.in(uartRBR); got != want {
			t.Errorf("RBR = %q, want %q", got, want)
		}
	}
	if got := u.in(uartLSR); got&lsrDR != 0 {
		t.Errorf("LSR = %#x after draining, want no DR", got)
	}
	if got := u.in(uartRBR); got != 0 {
		t.Errorf("RBR when empty = %#x, want 0", got)
	}
	u.outb(uartRBR, 'C')
	if got := u.irqsSince(); got != 1 {
		t.Errorf("loopback write with RDI raised %d interrupts, want 1", got)
	}
	// The loopback receive FIFO is bounded like the input one.
	for i := 0; i < 2*uartFIFOSize; i++ {
		u.outb(uartRBR, byte(i))
	}
	n := 0
	for u.in(uartLSR)&lsrDR != 0 {
		u.in(uartRBR)
		n++
		if n > 2*uartFIFOSize {
			break
		}
	}
	if n != uartFIFOSize {
		t.Errorf("loopback FIFO held %d bytes, want %d", n, uartFIFOSize)
	}
}

func TestSerialInput(t *testing.T) {
	u := newUART(t)
	if got := u.Input([]byte("ab")); got != 2 {
		t.Errorf("Input(\"ab\") = %d, want 2", got)
	}
	if got := u.irqsSince(); got != 0 {
		t.Errorf("Input with IER 0 raised %d interrupts", got)
	}
	if got, want := u.in(uartIIR), byte(iirNone); got != want {
		t.Errorf("IIR with data but RDI off = %#x, want %#x", got, want)
	}
	u.outb(uartIER, ierRDI)
	if got := u.irqsSince(); got != 1 {
		t.Errorf("enabling RDI with data waiting raised %d interrupts, want 1", got)
	}
	if got := u.Input([]byte("c")); got != 1 {
		t.Errorf("Input(\"c\") = %d, want 1", got)
	}
	if got := u.irqsSince(); got != 1 {
		t.Errorf("Input with RDI raised %d interrupts, want 1", got)
	}
	if got := u.Input(nil); got != 0 || u.irqsSince() != 0 {
		t.Errorf("Input(nil) = %d or raised an interrupt", got)
	}
	// RDI outranks THRI (16550 priorities).
	u.outb(uartIER, ierRDI|ierTHRI)
	if got, want := u.in(uartIIR), byte(iirRDI); got != want {
		t.Errorf("IIR with data and THRI pending = %#x, want %#x", got, want)
	}
	var got []byte
	for u.in(uartLSR)&lsrDR != 0 && len(got) < 10 {
		got = append(got, u.in(uartRBR))
	}
	if string(got) != "abc" {
		t.Errorf("RBR reads = %q, want %q", got, "abc")
	}
	if got, want := u.in(uartIIR), byte(iirTHRI); got != want {
		t.Errorf("IIR after draining = %#x, want %#x (THRI still pending)", got, want)
	}
}

func TestSerialInputOverflow(t *testing.T) {
	u := newUART(t)
	in := bytes.Repeat([]byte("0123456789"), 10)
	if got := u.Input(in[:60]); got != 60 {
		t.Errorf("Input(60 bytes) = %d, want 60", got)
	}
	if got := u.Input(in[60:]); got != uartFIFOSize-60 {
		t.Errorf("Input(40 more bytes) = %d, want %d", got, uartFIFOSize-60)
	}
	if got := u.Input(in); got != 0 {
		t.Errorf("Input into a full FIFO = %d, want 0", got)
	}
	var got []byte
	for u.in(uartLSR)&lsrDR != 0 && len(got) <= 2*uartFIFOSize {
		got = append(got, u.in(uartRBR))
	}
	if !bytes.Equal(got, in[:uartFIFOSize]) {
		t.Errorf("RBR reads = %q, want %q", got, in[:uartFIFOSize])
	}
	if got := u.Input(in); got != uartFIFOSize {
		t.Errorf("Input after draining = %d, want %d", got, uartFIFOSize)
	}
}

func TestSerialFIFO(t *testing.T) {
	u := newUART(t)
	u.outb(uartIIR, 0x01) // FCR: enable FIFOs
	if got, want := u.in(uartIIR), byte(iirFIFOs|iirNone); got != want {
		t.Errorf("IIR with FIFOs = %#x, want %#x", got, want)
	}
	u.outb(uartIER, ierTHRI)
	if got, want := u.in(uartIIR), byte(iirFIFOs|iirTHRI); got != want {
		t.Errorf("IIR with FIFOs and THRI = %#x, want %#x", got, want)
	}
	if got, want := u.in(uartIIR), byte(iirFIFOs|iirNone); got != want {
		t.Errorf("second IIR with FIFOs = %#x, want %#x (THRI cleared)", got, want)
	}
	u.Input([]byte("xyz"))
	u.outb(uartIIR, 0x01|0x02) // FCR: clear receive FIFO
	if got := u.in(uartLSR); got&lsrDR != 0 {
		t.Errorf("LSR = %#x after clearing the receive FIFO, want no DR", got)
	}
	u.outb(uartIIR, 0x00) // FIFOs off: an 8250
	if got, want := u.in(uartIIR)&0xc0, byte(0); got != want {
		t.Errorf("IIR & 0xc0 without FIFOs = %#x, want %#x", got, want)
	}
}
