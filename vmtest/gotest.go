package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hvnet/hvnet/vmtest/event"
)

// GoTestReport is what ReportGoTests found in a guest's events.
type GoTestReport struct {
	Passed, Failed, Skipped int
	// Profiles are the coverage profiles that came back, by test
	// binary (Image.Cover and `/init gotest -cover`).
	Profiles map[string]string
}

// ReportGoTests turns the results a guest sent with `/init gotest` (one
// event.TypeTest event per test) into subtests of t, named
// GUEST/BINARY/TEST: each passes, fails (with the test's output) or is
// skipped as it did in the guest. Coverage profiles are returned and,
// when coverDir is not empty, written there as BINARY.cover. It fails t
// when the guest sent no test result at all.
func ReportGoTests(t *testing.T, guest string, events []event.Event, coverDir string) GoTestReport {
	t.Helper()
	rep := GoTestReport{Profiles: map[string]string{}}
	n := 0
	for _, e := range events {
		switch e.Type {
		case event.TypeTest:
			var r event.Test
			if err := e.Decode(&r); err != nil {
				t.Errorf("guest %s: %v", guest, err)
				continue
			}
			if r.Action == "output" { // the binary's own lines, beside a failed test
				t.Logf("guest %s, %s printed outside its tests:\n%s", guest, r.Binary, strings.TrimRight(r.Output, "\n"))
				continue
			}
			n++
			name := r.Test
			if name == "" {
				name = "(binary)"
			}
			switch r.Action {
			case "pass":
				rep.Passed++
			case "skip":
				rep.Skipped++
			default:
				rep.Failed++
			}
			t.Run(guest+"/"+strings.TrimSuffix(r.Binary, ".test")+"/"+name, func(t *testing.T) {
				if out := strings.TrimRight(r.Output, "\n"); out != "" {
					t.Log("in the guest (" + fmt.Sprintf("%.2fs", r.Elapsed) + "):\n" + out)
				}
				switch r.Action {
				case "pass":
				case "skip":
					t.SkipNow()
				default:
					t.Fail()
				}
			})
		case event.TypeCover:
			var c event.Cover
			if err := e.Decode(&c); err != nil {
				t.Errorf("guest %s: %v", guest, err)
				continue
			}
			rep.Profiles[c.Binary] = c.Profile
			if coverDir != "" {
				p := filepath.Join(coverDir, strings.TrimSuffix(c.Binary, ".test")+".cover")
				if err := os.WriteFile(p, []byte(c.Profile), 0o644); err != nil {
					t.Errorf("guest %s: coverage profile: %v", guest, err)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("guest %s sent no Go test results (did its script run /init gotest?)", guest)
	}
	return rep
}
