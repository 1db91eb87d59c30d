package vmm

import (
	"io"
	"sync"
)

// 8250/16550A UART registers (offsets from the base port) and bits, as in
// Linux's include/uapi/linux/serial_reg.h.
const (
	uartRBR = 0 // receive buffer (read, DLAB=0); THR on write; DLL with DLAB
	uartIER = 1 // interrupt enable (DLAB=0); DLM with DLAB
	uartIIR = 2 // interrupt identification (read); FCR on write
	uartLCR = 3
	uartMCR = 4
	uartLSR = 5
	uartMSR = 6
	uartSCR = 7

	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty

	iirNone  = 0x01
	iirTHRI  = 0x02
	iirRDI   = 0x04
	iirFIFOs = 0xc0 // FIFOs enabled: what makes Linux call it a 16550A

	lcrDLAB = 0x80
	mcrLoop = 0x10
	lsrDR   = 0x01
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrCTS = 0x10
	msrDSR = 0x20
	msrRI  = 0x40
	msrDCD = 0x80

	uartFIFOSize = 64
)

// Serial is an 8250/16550A UART: guest output goes to Out, bytes fed with
// Input become guest input. Interrupts are edges on its IRQ line (raise).
type Serial struct {
	mu       sync.Mutex
	out      io.Writer
	raise    func()
	ier, lcr byte
	mcr, scr byte
	dll, dlm byte
	fcr      byte
	thriPend bool
	rx       []byte
}

// NewSerial returns a UART writing to out and raising its interrupt with
// raise (may be nil).
func NewSerial(out io.Writer, raise func()) *Serial {
	if out == nil {
		out = io.Discard
	}
	return &Serial{out: out, raise: raise, dll: 0x0c, mcr: 0x08}
}

// Input queues bytes for the guest to read, dropping what does not fit
// in the receive FIFO (like a UART overrun).
func (s *Serial) Input(b []byte) int {
	s.mu.Lock()
	room := uartFIFOSize - len(s.rx)
	if room < len(b) {
		b = b[:room]
	}
	s.rx = append(s.rx, b...)
	irq := len(b) > 0 && s.ier&ierRDI != 0
	s.mu.Unlock()
	if irq {
		s.interrupt()
	}
	return len(b)
}

func (s *Serial) interrupt() {
	if s.raise != nil {
		s.raise()
	}
}

// iir computes the pending interrupt, highest priority first.
func (s *Serial) iir() byte {
	id := byte(iirNone)
	switch {
	case s.ier&ierRDI != 0 && len(s.rx) > 0:
		id = iirRDI
	case s.ier&ierTHRI != 0 && s.thriPend:
		id = iirTHRI
	}
	if s.fcr&1 != 0 {
		id |= iirFIFOs
	}
	return id
}

// PIORead implements PIODevice.
func (s *Serial) PIORead(off uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v byte
	switch off {
	case uartRBR:
		if s.lcr&lcrDLAB != 0 {
			v = s.dll
		} else if len(s.rx) > 0 {
			v = s.rx[0]
			s.rx = s.rx[1:]
		}
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			v = s.dlm
		} else {
			v = s.ier
		}
	case uartIIR:
		v = s.iir()
		if v&0x0f == iirTHRI {
			s.thriPend = false // reading IIR clears a THRE interrupt
		}
	case uartLCR:
		v = s.lcr
	case uartMCR:
		v = s.mcr
	case uartLSR:
		v = lsrTHRE | lsrTEMT
		if len(s.rx) > 0 {
			v |= lsrDR
		}
	case uartMSR:
		if s.mcr&mcrLoop != 0 {
			// Loopback: the modem outputs feed the modem inputs
			// (DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD), which is
			// what Linux's 8250 probe checks.
			m := s.mcr
			v = (m&0x01)<<5 | (m&0x02)<<3 | (m&0x04)<<4 | (m&0x08)<<4
		} else {
			v = msrDCD | msrDSR | msrCTS
		}
	case uartSCR:
		v = s.scr
	}
	for i := range data {
		data[i] = 0
	}
	if len(data) > 0 {
		data[0] = v
	}
}

// PIOWrite implements PIODevice.
func (s *Serial) PIOWrite(off uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	s.mu.Lock()
	irq := false
	switch off {
	case uartRBR:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			break
		}
		if s.mcr&mcrLoop != 0 {
			if len(s.rx) < uartFIFOSize {
				s.rx = append(s.rx, v)
			}
			irq = s.ier&ierRDI != 0
		} else {
			s.out.Write(data[:1])
		}
		// The byte leaves at once: the holding register is empty again.
		s.thriPend = true
		irq = irq || s.ier&ierTHRI != 0
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			break
		}
		old := s.ier
		s.ier = v & 0x0f
		// Enabling THRI with an empty holding register interrupts
		// at once (16550 behaviour, relied on by the Linux driver).
		if s.ier&ierTHRI != 0 && old&ierTHRI == 0 {
			s.thriPend = true
			irq = true
		}
		if s.ier&ierRDI != 0 && len(s.rx) > 0 {
			irq = true
		}
	case uartIIR:
		s.fcr = v
		if v&0x02 != 0 {
			s.rx = s.rx[:0]
		}
	case uartLCR:
		s.lcr = v
	case uartMCR:
		s.mcr = v & 0x1f
	case uartSCR:
		s.scr = v
	}
	s.mu.Unlock()
	if irq {
		s.interrupt()
	}
}
