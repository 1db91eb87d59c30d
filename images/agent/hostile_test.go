package main

import (
	"testing"
	"time"
)

func TestParseRAMEnd(t *testing.T) {
	iomem := `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : Reserved
00100000-0fffffff : System RAM
  01000000-01e02596 : Kernel code
c0000000-c0007fff : 0000:00:01.0
`
	got, err := parseRAMEnd(iomem)
	if want := uint64(0x10000000); err != nil || got != want {
		t.Errorf("parseRAMEnd = %#x, %v; want %#x", got, err, want)
	}
	if _, err := parseRAMEnd("00000000-00000fff : Reserved\n"); err == nil {
		t.Error("parseRAMEnd without System RAM: no error")
	}
}

func TestWindows(t *testing.T) {
	w := 8 * time.Second
	at := time.Unix(80, 0) // window 10 starts here
	if k := windowOf(at, w); k != 10 {
		t.Errorf("windowOf(80 s) = %d; want 10", k)
	}
	if k := windowOf(at.Add(-time.Nanosecond), w); k != 9 {
		t.Errorf("windowOf(80 s - 1 ns) = %d; want 9", k)
	}
	if s := windowStart(11, w); !s.Equal(time.Unix(88, 0)) {
		t.Errorf("windowStart(11) = %v; want 88 s", s)
	}
}

// Phases are spread over windows without a short period: a measuring
// guest that visits every 3rd (or 2nd, 4th, ...) window still sees every
// phase, in about equal shares.
func TestPhasesDoNotAlias(t *testing.T) {
	for _, phases := range []int64{2, 3} {
		for stride := int64(1); stride <= 6; stride++ {
			var n [3]int
			for i := range int64(300) {
				p := phaseOf(1_000_000+i*stride, phases)
				if p < 0 || p >= phases {
					t.Fatalf("phaseOf = %d with %d phases", p, phases)
				}
				n[p]++
			}
			for p := range phases {
				if n[p] < int(300/phases)/2 {
					t.Errorf("%d phases, every %d windows: phase %d in %d of 300", phases, stride, p, n[p])
				}
			}
		}
	}
}

// The driver must refuse to run outside a test guest: on a real machine
// it would take the network card from its driver.
func TestHostileRefusesOutsideGuest(t *testing.T) {
	if err := inTestGuest(); err == nil {
		t.Skip("running inside an hvnet test guest")
	}
	if got := hostileMain([]string{"-d", "1ms"}); got != 2 {
		t.Errorf("hostileMain outside a test guest = %d; want 2 (refused)", got)
	}
}
