// Package event is the structured channel from a test guest to the host
// test that booted it: JSON lines written to the guest's second serial
// port (COM2, /dev/ttyS1), which hvnet's VMM hands to the host apart from
// the console (vmm.Config.Events). A program in the guest reports with
// Emit; a shell script with the guest agent's `/init event TYPE [JSON]`.
//
//	// in the guest (a command built into the image with vmtest.Image):
//	event.Emit("listening", map[string]any{"port": 7})
//
//	// on the host: lab.Result.Events, vmtest.GuestResult.Events
//	for _, ev := range res.Events {
//		if ev.Type == "listening" { ... }
//	}
//
// The guest agent itself sends TypeReady when its interfaces are
// configured (before the script runs) and, from `/init gotest`, one
// TypeTest event per test of a Go test binary and one TypeCover with its
// coverage profile (see vmtest.ReportGoTests).
//
// The package has no dependency but the standard library and x/sys/unix,
// so any guest program can import it.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Device is the guest's end of the channel.
const Device = "/dev/ttyS1"

// MaxLine bounds one event's line (a coverage profile is the largest).
// The host drops longer lines, counted as malformed.
const MaxLine = 4 << 20

// Types the guest agent sends.
const (
	TypeReady = "ready" // the agent configured the guest's interfaces and starts its script
	TypeTest  = "test"  // one test's outcome (Data: Test)
	TypeCover = "cover" // a test binary's coverage profile (Data: Cover)
)

// Event is one message from a guest.
type Event struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("event %q has no data", e.Type)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("event %q: %w", e.Type, err)
	}
	return nil
}

// Test is the data of a TypeTest event: what `go test -v` said of one
// test (or subtest, named with slashes).
type Test struct {
	Binary  string  `json:"binary"`  // the test binary's base name, e.g. "echo.test"
	Test    string  `json:"test"`    // e.g. "TestEcho" or "TestEcho/v6"
	Action  string  `json:"action"`  // "pass", "fail", "skip", or "output" (what the binary printed outside its tests, Test "")
	Elapsed float64 `json:"elapsed"` // seconds, as the test binary reported
	Output  string  `json:"output,omitempty"`
}

// Cover is the data of a TypeCover event.
type Cover struct {
	Binary  string `json:"binary"`
	Profile string `json:"profile"` // the -test.coverprofile file's contents
}

// Parse parses one line from the channel.
func Parse(line []byte) (Event, error) {
	line = bytes.TrimRight(line, "\r\n")
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("event line: %w", err)
	}
	if e.Type == "" {
		return Event{}, errors.New("event line: no type")
	}
	return e, nil
}

// Marshal renders an event as its line (with the newline).
func Marshal(typ string, data any) ([]byte, error) {
	if typ == "" {
		return nil, errors.New("event: empty type")
	}
	e := Event{Type: typ}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("event %q: %w", typ, err)
		}
		e.Data = b
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxLine {
		return nil, fmt.Errorf("event %q: %d bytes, more than the channel's %d", typ, len(b)+1, MaxLine)
	}
	return append(b, '\n'), nil
}

var (
	devMu sync.Mutex
	dev   *os.File
)

// Emit sends one event to the host. It is safe from several goroutines;
// events of several processes do not interleave (one write(2) each, which
// the tty layer serialises). Outside a test guest (no COM2) it fails.
func Emit(typ string, data any) error {
	line, err := Marshal(typ, data)
	if err != nil {
		return err
	}
	devMu.Lock()
	defer devMu.Unlock()
	if dev == nil {
		if !Available() {
			return fmt.Errorf("event %q: no event channel (%s has no UART: not a vmtest guest with events on)", typ, Device)
		}
		f, err := Open()
		if err != nil {
			return err
		}
		dev = f
	}
	if _, err := dev.Write(line); err != nil {
		return fmt.Errorf("event %q: write %s: %w", typ, Device, err)
	}
	return nil
}

// Available reports whether this guest has the channel: a UART at
// COM2 that the kernel found (a machine without one leaves ttyS1 of
// type 0, where writes would wait forever).
func Available() bool {
	b, err := os.ReadFile("/sys/class/tty/ttyS1/type")
	return err == nil && strings.TrimSpace(string(b)) != "0"
}

// Open opens the channel for writing in raw mode (no newline
// translation), for a caller that writes lines itself.
func Open() (*os.File, error) {
	f, err := os.OpenFile(Device, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("event channel: %w (is this a vmtest guest with events on?)", err)
	}
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	return f, nil
}

// Drain waits until what was written has left the UART (tcdrain): the
// host sees it before the guest powers off.
func Drain() {
	devMu.Lock()
	defer devMu.Unlock()
	if dev != nil {
		_ = unix.IoctlSetInt(int(dev.Fd()), unix.TCSBRK, 1)
	}
}
