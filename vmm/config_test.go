package vmm

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sparseFile creates a file of size bytes that takes no disk space.
func sparseFile(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidate(t *testing.T) {
	kernelPath := realKernelPath(t)
	img := realKernel(t)
	truncated := writeFile(t, "bzImage-half", img[:len(img)/2])
	random := make([]byte, 1<<20)
	for i, x := 0, uint32(1); i < len(random); i++ {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	randomPath := writeFile(t, "random", random)
	synth := writeFile(t, "bzImage-synthetic", synthKernel())
	missing := filepath.Join(t.TempDir(), "no-such-bzImage")
	initrd := writeFile(t, "initrd", []byte("070701 cpio would be here"))
	emptyInitrd := writeFile(t, "empty-initrd", nil)
	bigInitrd := sparseFile(t, "big-initrd", 100<<20)
	missingInitrd := filepath.Join(t.TempDir(), "no-such-initrd")

	for _, tc := range []struct {
		name       string
		cfg        Config
		wantErr    []string // substrings of the error; nil: no error
		wantIs     error
		wantMem    uint64
		wantCPUs   int
		wantInitrd int64
	}{
		{name: "defaults", cfg: Config{Kernel: kernelPath}, wantMem: 512, wantCPUs: 1},
		{name: "with initrd", cfg: Config{Kernel: kernelPath, Initrd: initrd, MemMiB: 256, CPUs: 4, Cmdline: "console=ttyS0"},
			wantMem: 256, wantCPUs: 4, wantInitrd: 25},
		{name: "32 CPUs", cfg: Config{Kernel: kernelPath, CPUs: maxCPUs}, wantMem: 512, wantCPUs: maxCPUs},
		{name: "100 MiB initrd in 1 GiB", cfg: Config{Kernel: kernelPath, Initrd: bigInitrd, MemMiB: 1024},
			wantMem: 1024, wantCPUs: 1, wantInitrd: 100 << 20},
		{name: "no kernel", cfg: Config{}, wantErr: []string{"no kernel"}},
		{name: "missing kernel", cfg: Config{Kernel: missing}, wantErr: []string{missing, "no such file"}, wantIs: os.ErrNotExist},
		{name: "kernel is a directory", cfg: Config{Kernel: t.TempDir()}, wantErr: []string{"kernel"}},
		{name: "truncated kernel", cfg: Config{Kernel: truncated}, wantErr: []string{truncated, "truncated"}, wantIs: ErrBadKernel},
		{name: "random bytes", cfg: Config{Kernel: randomPath}, wantErr: []string{randomPath}, wantIs: ErrBadKernel},
		{name: "memory too small", cfg: Config{Kernel: kernelPath, Initrd: bigInitrd, MemMiB: 64},
			wantErr: []string{"64 MiB too small", "initrd (100 MiB)", "need at least"}},
		{name: "too small for the kernel alone", cfg: Config{Kernel: kernelPath, MemMiB: MinMemMiB},
			wantErr: []string{"too small"}},
		{name: "odd memory", cfg: Config{Kernel: kernelPath, MemMiB: 513}, wantErr: []string{"--mem 513", "even"}},
		{name: "memory below minimum", cfg: Config{Kernel: kernelPath, MemMiB: 32}, wantErr: []string{"--mem 32"}},
		{name: "memory above maximum", cfg: Config{Kernel: kernelPath, MemMiB: MaxMemMiB + 2}, wantErr: []string{"--mem 65538"}},
		{name: "33 CPUs", cfg: Config{Kernel: kernelPath, CPUs: maxCPUs + 1}, wantErr: []string{"--cpus 33", "1..32"}},
		{name: "negative CPUs", cfg: Config{Kernel: kernelPath, CPUs: -1}, wantErr: []string{"--cpus -1"}},
		{name: "missing initrd", cfg: Config{Kernel: kernelPath, Initrd: missingInitrd}, wantErr: []string{"initrd", missingInitrd}, wantIs: os.ErrNotExist},
		{name: "empty initrd", cfg: Config{Kernel: kernelPath, Initrd: emptyInitrd}, wantErr: []string{emptyInitrd, "non-empty"}},
		{name: "initrd is a directory", cfg: Config{Kernel: kernelPath, Initrd: t.TempDir()}, wantErr: []string{"initrd", "regular file"}},
		{name: "command line too long", cfg: Config{Kernel: kernelPath, Cmdline: strings.Repeat("x", 5000)},
			wantErr: []string{"command line of 5000 bytes"}},
		{name: "synthetic kernel", cfg: Config{Kernel: synth, MemMiB: 64}, wantMem: 64, wantCPUs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			k, initrdSize, err := cfg.Validate()
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Validate(%+v) = nil, want error mentioning %q", tc.cfg, tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Validate(%s) = %q, want it to mention %q", tc.name, err, w)
					}
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("Validate(%s) = %v, want errors.Is %v", tc.name, err, tc.wantIs)
				}
				if !strings.HasPrefix(err.Error(), "config: ") {
					t.Errorf("Validate(%s) = %q, want a \"config: \" prefix", tc.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate(%s) = %v, want nil", tc.name, err)
			}
			if k == nil || len(k.Protected) == 0 {
				t.Errorf("Validate(%s) returned no kernel", tc.name)
			}
			if initrdSize != tc.wantInitrd {
				t.Errorf("Validate(%s) initrd size = %d, want %d", tc.name, initrdSize, tc.wantInitrd)
			}
			if cfg.MemMiB != tc.wantMem || cfg.CPUs != tc.wantCPUs {
				t.Errorf("Validate(%s) left MemMiB %d, CPUs %d; want %d, %d", tc.name, cfg.MemMiB, cfg.CPUs, tc.wantMem, tc.wantCPUs)
			}
		})
	}
}

// writeLog records each Write call.
type writeLog struct {
	writes []string
	err    error
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), w.err
}

func TestLineWriter(t *testing.T) {
	w := &writeLog{}
	l := &lineWriter{w: w}
	step := func(what string, want ...string) {
		t.Helper()
		if strings.Join(w.writes, "|") != strings.Join(want, "|") {
			t.Errorf("after %s: writes %q, want %q", what, w.writes, want)
		}
	}
	for _, s := range []string{"boot", "ing"} {
		if n, err := l.Write([]byte(s)); n != len(s) || err != nil {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	step("a partial line")
	l.Write([]byte(" linux\nsecond"))
	step("a newline", "booting linux\n")
	l.Write([]byte(" line\nthird\nfour"))
	step("two newlines in one write", "booting linux\n", "second line\nthird\n")
	l.Flush()
	step("Flush", "booting linux\n", "second line\nthird\n", "four")
	l.Flush()
	step("a second Flush", "booting linux\n", "second line\nthird\n", "four")

	// A line that never ends is written in pieces of at least 4 KiB.
	w.writes = nil
	long := strings.Repeat("x", 4095)
	l.Write([]byte(long))
	step("4095 bytes without a newline")
	l.Write([]byte("y"))
	step("4096 bytes without a newline", long+"y")
	l.Write([]byte("\n"))
	step("the newline", long+"y", "\n")

	// The underlying writer's error comes back.
	w.writes, w.err = nil, errors.New("disk full")
	if _, err := l.Write([]byte("x\n")); err == nil {
		t.Errorf("Write to a failing writer = nil, want the error")
	}
}

// BenchmarkLineWriter writes console output a byte at a time, as the UART
// does, with 80-byte lines.
func BenchmarkLineWriter(b *testing.B) {
	l := &lineWriter{w: io.Discard}
	line := []byte(strings.Repeat("x", 79) + "\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		for i := range line {
			l.Write(line[i : i+1])
		}
	}
}
