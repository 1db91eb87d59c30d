package images

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// buildForTest runs the real Build into the default cache (shared with the
// other packages' tests) and skips when the build host cannot build.
func buildForTest(t *testing.T) *Set {
	t.Helper()
	if testing.Short() {
		t.Skip("builds images; skipped with -short")
	}
	for _, p := range []string{"apt-get", "dpkg", "go"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("no %s on this host: %v", p, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := Build(ctx, Config{Progress: testWriter{t}, Log: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Info})})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func TestBuild(t *testing.T) {
	s := buildForTest(t)
	t.Logf("set: %+v", *s)
	for _, p := range []string{s.Kernel, s.Initrd, s.ModulesDir + "/modules.dep"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", p, fi.Size())
	}
	// A second call finds everything up to date: it rewrites none of the
	// files (the time is logged, not asserted: on a loaded machine it says
	// nothing, and a rebuild shows in the files).
	mtimes := func() map[string]time.Time {
		m := map[string]time.Time{}
		for _, p := range []string{s.Kernel, s.Vmlinux, s.Initrd, s.ModulesDir + "/modules.dep"} {
			if fi, err := os.Stat(p); err == nil {
				m[p] = fi.ModTime()
			}
		}
		return m
	}
	before := mtimes()
	start := time.Now()
	s2, err := Build(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up-to-date Build took %v", time.Since(start))
	for p, mt := range mtimes() {
		if !mt.Equal(before[p]) {
			t.Errorf("up-to-date Build rewrote %s (modified %v, was %v)", p, mt, before[p])
		}
	}
	if *s2 != *s {
		t.Errorf("second Build = %+v, want %+v", *s2, *s)
	}
}
