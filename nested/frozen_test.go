package nested

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFrozen: a test host killed at its time limit is ErrFrozen only when
// its console had been silent for FrozenAfter; one that kept talking is a
// plain kill. A shell script stands in for QEMU.
func TestFrozen(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	qemu := func(script string) string {
		p := filepath.Join(dir, "qemu-"+time.Now().Format("150405.000000000"))
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(script string) error {
		_, err := Run(context.Background(), Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
			QEMU: qemu(script), Timeout: 4 * time.Second, WorkDir: dir})
		return err
	}
	old := FrozenAfter
	defer func() { FrozenAfter = old }()
	// Margins of 2 s and more either way (a silent host's first line may
	// come late; a talking host's lines, and the kill, may be delayed):
	// a loaded machine stalls a shell for a second at times. Silence
	// counted from the start instead of the last line still fails: the
	// talking host runs past FrozenAfter.
	FrozenAfter = 2 * time.Second

	if err := run("echo booting; exec sleep 30"); !errors.Is(err, ErrFrozen) {
		t.Errorf("silent host killed at its limit: %v, want ErrFrozen", err)
	}
	if err := run("while :; do echo busy; sleep 0.2; done"); err == nil || errors.Is(err, ErrFrozen) {
		t.Errorf("talking host killed at its limit: %v, want a plain kill", err)
	}

	// SilenceLimit: a host silent that long is killed as frozen well
	// before its time limit; one that keeps talking runs to its end.
	limited := func(script string, limit time.Duration) (time.Duration, error) {
		start := time.Now()
		_, err := Run(context.Background(), Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
			QEMU: qemu(script), Timeout: 20 * time.Second, SilenceLimit: limit, WorkDir: dir})
		return time.Since(start), err
	}
	FrozenAfter = old
	if took, err := limited("echo booting; exec sleep 30", 500*time.Millisecond); !errors.Is(err, ErrFrozen) || !strings.Contains(err.Error(), "limit 500ms") {
		t.Errorf("silent host with a 500ms silence limit: %v after %v, want ErrFrozen naming the limit", err, took)
	} else if took >= 20*time.Second {
		t.Errorf("silent host with a 500ms silence limit ran to its time limit (%v)", took)
	}
	// It talks for 3 s, past its 2 s limit, a line every 0.2 s.
	if _, err := limited("for i in $(seq 15); do echo busy; sleep 0.2; done", 2*time.Second); errors.Is(err, ErrFrozen) {
		t.Errorf("talking host was killed by the silence limit: %v", err)
	}

	// LockupLimit: a host whose own kernel reports a CPU stuck that long
	// is killed as frozen although its console keeps talking; a guest's
	// report (a test's log line, prefixed) and a short lockup are not.
	lockup := func(script string) (time.Duration, error) {
		start := time.Now()
		_, err := Run(context.Background(), Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
			QEMU: qemu(script), Timeout: 20 * time.Second, LockupLimit: 60 * time.Second, WorkDir: dir})
		return time.Since(start), err
	}
	report := func(prefix string, secs int) string {
		return fmt.Sprintf("echo '%s[  121.407783] watchdog: BUG: soft lockup - CPU#1 stuck for %ds! [khugepaged:36]'", prefix, secs)
	}
	if took, err := lockup(report("", 45) + "; " + report("", 71) + "; while :; do echo still; sleep 0.2; done"); !errors.Is(err, ErrFrozen) || !strings.Contains(err.Error(), "stuck for 71s") {
		t.Errorf("host reporting a 71 s soft lockup: %v after %v, want ErrFrozen quoting the report", err, took)
	} else if took >= 20*time.Second {
		t.Errorf("host reporting a 71 s soft lockup ran to its time limit (%v)", took)
	}
	if _, err := lockup(report("", 45) + "; " + report("    guests_test.go:269: g1| ", 300) + "; sleep 1"); err == nil || errors.Is(err, ErrFrozen) {
		t.Errorf("a 45 s lockup and a guest's report: %v, want the plain end without a result", err)
	}
}
