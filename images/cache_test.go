package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hvnet/hvnet/internal/progress"
)

// fakeSteps replaces the builder's steps with counting fakes.
type fakeSteps struct {
	ref        kernelRef
	src        string
	resolveErr error
	kernels    atomic.Int32
	initrds    atomic.Int32
	mu         sync.Mutex
}

func (f *fakeSteps) builder(t *testing.T, cache string) *builder {
	b, err := newBuilder(Config{CacheDir: cache, SourceDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b.resolveKernel = func(context.Context) (kernelRef, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.ref, f.resolveErr
	}
	b.sourceKey = func() (string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.src, nil
	}
	b.buildKernel = func(_ context.Context, ref kernelRef, dir string) (kernelOut, error) {
		f.kernels.Add(1)
		time.Sleep(20 * time.Millisecond) // widen the race window for the concurrency test
		kv := "6.1.0-" + ref.Version
		k := kernelOut{Kernel: "vmlinuz-" + kv, ModulesDir: filepath.Join("modules", kv), KernelVersion: kv}
		if err := os.MkdirAll(filepath.Join(dir, k.ModulesDir), 0o755); err != nil {
			return k, err
		}
		os.WriteFile(filepath.Join(dir, k.Kernel), []byte("bz"), 0o644)
		return k, os.WriteFile(filepath.Join(dir, k.ModulesDir, "modules.dep"), nil, 0o644)
	}
	b.buildInitrd = func(_ context.Context, kdir string, k kernelOut, out string) error {
		f.initrds.Add(1)
		return os.WriteFile(out, []byte("cpio"), 0o644)
	}
	return b
}

func (f *fakeSteps) set(ref kernelRef, src string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ref, f.src = ref, src
}

func (f *fakeSteps) check(t *testing.T, what string, kernels, initrds int32) {
	t.Helper()
	if k, i := f.kernels.Load(), f.initrds.Load(); k != kernels || i != initrds {
		t.Errorf("%s: %d kernel and %d initramfs builds, want %d and %d", what, k, i, kernels, initrds)
	}
}

func TestIncremental(t *testing.T) {
	cache := t.TempDir()
	f := &fakeSteps{}
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-a")
	ctx := context.Background()

	s1, err := f.builder(t, cache).build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "first build", 1, 1)
	if s1.KernelVersion != "6.1.0-1" || s1.PackageVersion != "1" || !exists(s1.Kernel, s1.Initrd) {
		t.Errorf("first build = %+v", *s1)
	}

	s2, err := f.builder(t, cache).build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "no change", 1, 1)
	if *s2 != *s1 {
		t.Errorf("no change: set = %+v, want %+v", *s2, *s1)
	}

	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-b")
	s3, err := f.builder(t, cache).build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "source change", 1, 2)
	if s3.Initrd == s1.Initrd || s3.Kernel != s1.Kernel {
		t.Errorf("source change: initrd %s (was %s), kernel %s (was %s)", s3.Initrd, s1.Initrd, s3.Kernel, s1.Kernel)
	}

	f.set(kernelRef{"linux-image-6.1.0-2-cloud-amd64", "2"}, "src-b")
	s4, err := f.builder(t, cache).build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "new kernel", 2, 3)
	if s4.Package != "linux-image-6.1.0-2-cloud-amd64" || s4.KernelVersion != "6.1.0-2" {
		t.Errorf("new kernel: set = %+v", *s4)
	}

	// Back to the first inputs: both parts are still in the cache.
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-a")
	s5, err := f.builder(t, cache).build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, "back to first inputs", 2, 3)
	if *s5 != *s1 {
		t.Errorf("back to first inputs: set = %+v, want %+v", *s5, *s1)
	}

	// A deleted output is rebuilt.
	os.Remove(s5.Initrd)
	if _, err := f.builder(t, cache).build(ctx); err != nil {
		t.Fatal(err)
	}
	f.check(t, "initramfs deleted", 2, 4)
}

func TestResolveFailure(t *testing.T) {
	cache := t.TempDir()
	f := &fakeSteps{}
	f.resolveErr = errors.New("apt-cache: not found")
	if _, err := f.builder(t, cache).build(context.Background()); err == nil {
		t.Fatalf("build with apt failing and an empty cache: nil error")
	}
	f.resolveErr = nil
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-a")
	s1, err := f.builder(t, cache).build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.resolveErr = errors.New("apt-cache: not found")
	s2, err := f.builder(t, cache).build(context.Background())
	if err != nil {
		t.Fatalf("build with apt failing and a cached image: %v", err)
	}
	if *s2 != *s1 {
		t.Errorf("offline build = %+v, want the cached %+v", *s2, *s1)
	}
}

func TestConcurrentBuilds(t *testing.T) {
	cache := t.TempDir()
	f := &fakeSteps{}
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-a")
	var wg sync.WaitGroup
	sets := make([]*Set, 4)
	errs := make([]error, 4)
	for i := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sets[i], errs[i] = f.builder(t, cache).build(context.Background())
		}()
	}
	wg.Wait()
	for i := range sets {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if *sets[i] != *sets[0] {
			t.Errorf("build %d = %+v, want %+v", i, *sets[i], *sets[0])
		}
	}
	f.check(t, "4 concurrent builds", 1, 1)
}

func TestLockHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	l, err := lockCache(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan struct{})
	go func() {
		<-waited
		cancel()
	}()
	if _, err := lockCache(ctx, p, func() { close(waited) }); !errors.Is(err, context.Canceled) {
		t.Errorf("lockCache while held = %v, want context.Canceled", err)
	}
}

func TestHasherFraming(t *testing.T) {
	a, b := newHasher(), newHasher()
	a.add("x", "ab")
	a.add("y", "c")
	b.add("x", "a")
	b.add("y", "bc")
	if a.key() == b.key() {
		t.Errorf("(ab, c) and (a, bc) hash alike")
	}
}

func TestGC(t *testing.T) {
	cache := t.TempDir()
	f := &fakeSteps{}
	var sets []*Set
	for i := range 5 {
		f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, fmt.Sprint("src-", i))
		s, err := f.builder(t, cache).build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Distinct, increasing modification times.
		mt := time.Now().Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(s.Initrd, mt, mt)
		sets = append(sets, s)
	}
	stale := filepath.Join(cache, "initramfs", "x.cpio.tmp-1")
	os.WriteFile(stale, nil, 0o644)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-0")
	if _, err := f.builder(t, cache).build(context.Background()); err != nil {
		t.Fatal(err)
	}
	// src-0 rebuilt (it was pruned after the third build) and current;
	// src-4 and src-3 are the newest others; the rest and the stale
	// temporary file are gone.
	for i, s := range sets {
		want := i == 0 || i >= 3
		if got := exists(s.Initrd); got != want {
			t.Errorf("initramfs of src-%d exists = %v, want %v", i, got, want)
		}
	}
	if exists(stale) {
		t.Errorf("stale temporary file kept")
	}
}

func TestHashSources(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"images/agent/main.go", "images/agent/main_test.go", "images/agentcfg/a.go", "go.sum", "tools.go"} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(src, f), []byte(f), 0o644)
	}
	saved := ExtraBinaries
	defer func() { ExtraBinaries = saved }()
	ExtraBinaries = map[string]string{}
	b := &builder{srcDir: src}
	key := func() string {
		t.Helper()
		k, err := b.hashSources()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key()
	if key() != k0 {
		t.Fatalf("hashSources is not stable")
	}
	os.WriteFile(filepath.Join(src, "images/agent/main_test.go"), []byte("changed"), 0o644)
	if key() != k0 {
		t.Errorf("a _test.go change changed the key")
	}
	for _, f := range []string{"images/agent/main.go", "images/agentcfg/a.go", "go.sum"} {
		os.WriteFile(filepath.Join(src, f), []byte("changed "+f), 0o644)
		k := key()
		if k == k0 {
			t.Errorf("changing %s did not change the key", f)
		}
		k0 = k
	}
	ExtraBinaries = map[string]string{filepath.Join(src, "no-such-binary"): "nosuch-pkg"}
	if _, err := b.hashSources(); err == nil || !strings.Contains(err.Error(), "apt-get install nosuch-pkg") {
		t.Errorf("hashSources with a missing binary = %v, want an apt-get install hint", err)
	}
}

// A cold build shows its steps with the time each took (plain lines
// here: the output is no terminal), a failing one says which step failed,
// and a warm build shows nothing.
func TestBuildShowsSteps(t *testing.T) {
	cache := t.TempDir()
	f := &fakeSteps{}
	f.set(kernelRef{"linux-image-6.1.0-1-cloud-amd64", "1"}, "src-a")
	var out strings.Builder
	b := f.builder(t, cache)
	b.steps = progress.NewMode(&out, false)
	if _, err := b.build(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"images: preparing kernel linux-image-6.1.0-1-cloud-amd64 1 ...",
		"images: preparing kernel linux-image-6.1.0-1-cloud-amd64 1: done in ",
		"images: building the initramfs ...",
		"images: building the initramfs: done in ",
		"images: ready in ",
	}
	if len(lines) != len(want) {
		t.Fatalf("cold build said:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d %q, want it to start %q", i, lines[i], w)
		}
	}

	out.Reset()
	b = f.builder(t, cache)
	b.steps = progress.NewMode(&out, false)
	if _, err := b.build(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("a warm build said %q", out.String())
	}

	f.set(kernelRef{"linux-image-6.1.0-2-cloud-amd64", "2"}, "src-a")
	b = f.builder(t, cache)
	b.steps = progress.NewMode(&out, false)
	b.buildInitrd = func(context.Context, string, kernelOut, string) error { return errors.New("u-root broke") }
	if _, err := b.build(context.Background()); err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(out.String(), "images: building the initramfs: failed after ") || !strings.HasSuffix(out.String(), ": u-root broke\n") {
		t.Errorf("a failed build said:\n%s", out.String())
	}
}
