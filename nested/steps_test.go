package nested

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/internal/lines"
	"github.com/hvnet/hvnet/internal/progress"
)

// The test host's start shows as steps: the initramfs, the boot until the
// agent's first line, the job until its result, each with its time; the
// console comes through whole. A shell script stands in for QEMU.
func TestRunShowsSteps(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(status int, tty bool) (string, string) {
		t.Helper()
		qemu := filepath.Join(dir, "qemu")
		script := "#!/bin/sh\necho 'early boot'\nsleep 0.1\necho '" + agentcfg.Start{Kernel: "6.1", Uptime: 1.5, CPUs: 2}.String() + "'\n" +
			"echo 'job output'\necho '" + agentcfg.Result{Status: status}.String() + "'\n" +
			"exit " + map[int]string{0: "1", 3: "7"}[status] + "\n" // isa-debug-exit: (status<<1)|1
		if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		var steps, console lines.Buffer
		r := progress.NewMode(&steps, tty)
		res, err := Run(context.Background(), Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
			QEMU: qemu, Timeout: 20 * time.Second, WorkDir: dir, Steps: r, Console: &console, MemMiB: 512, CPUs: 1})
		if err != nil || res.Status != status {
			t.Fatalf("Run: %+v, %v", res, err)
		}
		return steps.String(), console.String()
	}
	steps, console := run(0, false)
	want := regexp.MustCompile(`^nested: writing the test host's initramfs \(0 files\) \.\.\.
nested: writing the test host's initramfs \(0 files\): done in \d+\.\ds
nested: booting the test host \(QEMU TCG, 1 vCPUs, 512 MiB\) \.\.\.
nested: booting the test host \(QEMU TCG, 1 vCPUs, 512 MiB\): done in \d+\.\ds
nested: running the job in the test host \.\.\.
nested: running the job in the test host: done in \d+\.\ds
$`)
	if !want.MatchString(steps) {
		t.Errorf("steps:\n%s", steps)
	}
	if !strings.HasPrefix(console, "early boot\nHVNET-AGENT-START ") || !strings.Contains(console, "\njob output\nHVNET-RESULT ") {
		t.Errorf("console:\n%s", console)
	}
	if steps, _ = run(3, false); !strings.Contains(steps, "nested: running the job in the test host: failed after ") || !strings.HasSuffix(steps, ": status 3\n") {
		t.Errorf("a failing job's steps:\n%s", steps)
	}
}

// On a terminal the spinner line is cleared before each console line and
// drawn again after it; the console itself is untouched.
func TestRunShowsStepsOnTerminal(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	qemu := filepath.Join(dir, "qemu")
	script := "#!/bin/sh\necho '" + agentcfg.Start{Kernel: "6.1"}.String() + "'\necho 'job output'\nsleep 0.3\necho '" +
		agentcfg.Result{}.String() + "'\nexit 1\n"
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var steps, console lines.Buffer
	if _, err := Run(context.Background(), Config{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"),
		QEMU: qemu, Timeout: 20 * time.Second, WorkDir: dir, Steps: progress.NewMode(&steps, true), Console: &console}); err != nil {
		t.Fatal(err)
	}
	got := steps.String()
	for _, want := range []string{" nested: booting the test host (QEMU TCG, 2 vCPUs, 4096 MiB) (", "\x1b[K",
		" nested: running the job in the test host (", "\r\x1b[K"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if strings.Contains(console.String(), "\r") || strings.Contains(console.String(), "\x1b") {
		t.Errorf("the spinner reached the console: %q", console.String())
	}
	// Each console line cleared the spinner: at least one clear per line
	// written while a step ran, beyond each step's end.
	if n := strings.Count(got, "\r\x1b[K"); n < 5 {
		t.Errorf("%d clears in %q", n, got)
	}
}
