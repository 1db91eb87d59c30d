package nested

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
			QEMU: qemu(script), Timeout: 2 * time.Second, WorkDir: dir})
		return err
	}
	old := FrozenAfter
	defer func() { FrozenAfter = old }()
	FrozenAfter = time.Second

	if err := run("echo booting; exec sleep 30"); !errors.Is(err, ErrFrozen) {
		t.Errorf("silent host killed at its limit: %v, want ErrFrozen", err)
	}
	if err := run("while :; do echo busy; sleep 0.2; done"); err == nil || errors.Is(err, ErrFrozen) {
		t.Errorf("talking host killed at its limit: %v, want a plain kill", err)
	}
}
