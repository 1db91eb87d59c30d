package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/progress"
)

// kernelRef names the Debian kernel package to use.
type kernelRef struct {
	Package string `json:"package"`
	Version string `json:"version"`
}

// kernelOut is what the kernel step leaves in its directory.
type kernelOut struct {
	Kernel        string `json:"kernel"`         // bzImage, relative to the kernel directory
	Vmlinux       string `json:"vmlinux"`        // the same kernel uncompressed (ELF), relative
	ModulesDir    string `json:"modules_dir"`    // lib/modules/<ver> tree, relative
	KernelVersion string `json:"kernel_version"` // uname -r
}

// manifest is the cache's record of the last build.
type manifest struct {
	Builder string `json:"builder"`
	Key     string `json:"key"`
	Set     Set    `json:"set"`
	Built   string `json:"built"`
}

// builder runs the build steps. The steps are fields so that tests can count
// and fake them.
type builder struct {
	cacheDir string
	srcDir   string
	log      hclog.Logger
	progress io.Writer
	steps    *progress.Reporter // of progress, unless the caller gave one

	// resolveKernel says which kernel package apt would install now.
	resolveKernel func(ctx context.Context) (kernelRef, error)
	// buildKernel downloads and unpacks ref into dir (which it creates).
	buildKernel func(ctx context.Context, ref kernelRef, dir string) (kernelOut, error)
	// sourceKey hashes the initramfs inputs other than the kernel.
	sourceKey func() (string, error)
	// buildInitrd writes the initramfs for the kernel in kdir to out.
	buildInitrd func(ctx context.Context, kdir string, k kernelOut, out string) error
}

func newBuilder(cfg Config) (*builder, error) {
	b := &builder{
		cacheDir: cfg.CacheDir,
		srcDir:   cfg.SourceDir,
		log:      cfg.Log,
		progress: cfg.Progress,
	}
	if b.cacheDir == "" {
		b.cacheDir = DefaultCacheDir()
	}
	if b.log == nil {
		b.log = hclog.NewNullLogger()
	}
	if b.progress == nil {
		b.progress = io.Discard
	}
	b.steps = cfg.Steps
	if b.steps == nil {
		b.steps = progress.NewMode(b.progress, false)
	}
	if b.srcDir == "" {
		d, err := findSourceDir()
		if err != nil {
			return nil, err
		}
		b.srcDir = d
	}
	b.resolveKernel = b.aptResolve
	b.buildKernel = b.aptKernel
	b.sourceKey = b.hashSources
	b.buildInitrd = b.uroot
	return b, nil
}

// findSourceDir locates the hvnet module root: from this file's path when
// the binary was built from source, else with "go env GOMOD".
func findSourceDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		d := filepath.Dir(filepath.Dir(file))
		if isHvnetModule(d) {
			return d, nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		d := filepath.Dir(strings.TrimSpace(string(out)))
		if isHvnetModule(d) {
			return d, nil
		}
	}
	return "", errors.New("images: cannot find the hvnet module source (set Config.SourceDir)")
}

// ModulePath is hvnet's module path.
const ModulePath = "github.com/hvnet/hvnet"

func isHvnetModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+ModulePath+"\n")
}

func (b *builder) manifestPath() string { return filepath.Join(b.cacheDir, "manifest.json") }

// current returns the manifest's set if it was built with key and its files
// are still there.
func (b *builder) current(key string) (*Set, bool) {
	var m manifest
	if err := readJSON(b.manifestPath(), &m); err != nil {
		return nil, false
	}
	if m.Builder != Version || (key != "" && m.Key != key) {
		return nil, false
	}
	if !exists(m.Set.Kernel, m.Set.Initrd, filepath.Join(m.Set.ModulesDir, "modules.dep")) {
		return nil, false
	}
	return &m.Set, true
}

func kernelKey(ref kernelRef) string {
	h := newHasher()
	h.add("builder", Version)
	h.add("package", ref.Package)
	h.add("version", ref.Version)
	h.add("modules", strings.Join(rootModules, ","))
	return h.key()
}

func (b *builder) build(ctx context.Context) (*Set, error) {
	start := time.Now()
	if err := os.MkdirAll(b.cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("images: cache directory: %w", err)
	}
	ref, err := b.resolveKernel(ctx)
	if err != nil {
		// Offline, or apt broke: a previous build is better than none.
		if s, ok := b.current(""); ok {
			b.log.Warn("cannot resolve the kernel package; using the cached image", "error", err, "package", s.Package)
			b.steps.Printf("images: warning: %v; using cached %s %s", err, s.Package, s.PackageVersion)
			return s, nil
		}
		return nil, err
	}
	src, err := b.sourceKey()
	if err != nil {
		return nil, fmt.Errorf("images: hashing inputs: %w", err)
	}
	kkey := kernelKey(ref)
	h := newHasher()
	h.add("builder", Version)
	h.add("kernel", kkey)
	h.add("sources", src)
	key := h.key()
	if s, ok := b.current(key); ok {
		b.log.Debug("images up to date", "key", key, "took", time.Since(start))
		return s, nil
	}

	var waiting *progress.Step
	lock, err := lockCache(ctx, filepath.Join(b.cacheDir, "lock"), func() {
		waiting = b.steps.Start("images: waiting for another build (lock %s)", filepath.Join(b.cacheDir, "lock"))
	})
	if err != nil {
		waiting.Fail(err)
		return nil, fmt.Errorf("images: %w", err)
	}
	waiting.Done()
	defer lock.unlock()
	if s, ok := b.current(key); ok { // built by another process meanwhile
		return s, nil
	}

	kdir := filepath.Join(b.cacheDir, "kernel", ref.Package+"_"+ref.Version+"_"+kkey[:8])
	k, err := b.kernel(ctx, ref, kdir)
	if err != nil {
		return nil, err
	}

	initrd := filepath.Join(b.cacheDir, "initramfs", key+".cpio")
	if !exists(initrd) {
		if err := os.MkdirAll(filepath.Dir(initrd), 0o755); err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		t := time.Now()
		st := b.steps.Start("images: building the initramfs")
		tmp := initrd + fmt.Sprintf(".tmp-%d", os.Getpid())
		if err := b.buildInitrd(ctx, kdir, k, tmp); err != nil {
			os.Remove(tmp)
			st.Fail(err)
			return nil, err
		}
		if err := os.Rename(tmp, initrd); err != nil {
			os.Remove(tmp)
			st.Fail(err)
			return nil, fmt.Errorf("images: %w", err)
		}
		st.Done()
		b.log.Info("built initramfs", "path", initrd, "took", time.Since(t))
	}

	s := &Set{
		Kernel:         filepath.Join(kdir, k.Kernel),
		Vmlinux:        filepath.Join(kdir, k.Vmlinux),
		Initrd:         initrd,
		ModulesDir:     filepath.Join(kdir, k.ModulesDir),
		KernelVersion:  k.KernelVersion,
		Package:        ref.Package,
		PackageVersion: ref.Version,
	}
	m := manifest{Builder: Version, Key: key, Set: *s, Built: time.Now().UTC().Format(time.RFC3339)}
	if err := writeJSONAtomic(b.manifestPath(), m); err != nil {
		return nil, fmt.Errorf("images: writing manifest: %w", err)
	}
	b.gc(s)
	b.steps.Printf("images: ready in %s: kernel %s (%s), initrd %s", progress.Elapsed(time.Since(start)), ref.Package, ref.Version, initrd)
	return s, nil
}

// kernel returns the unpacked kernel in kdir, building it if needed. The
// directory is built under a temporary name and renamed into place.
func (b *builder) kernel(ctx context.Context, ref kernelRef, kdir string) (kernelOut, error) {
	stamp := filepath.Join(kdir, "kernel.json")
	var k kernelOut
	if err := readJSON(stamp, &k); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(kdir), 0o755); err != nil {
		return k, fmt.Errorf("images: %w", err)
	}
	t := time.Now()
	st := b.steps.Start("images: preparing kernel %s %s", ref.Package, ref.Version)
	tmp := kdir + fmt.Sprintf(".tmp-%d", os.Getpid())
	os.RemoveAll(tmp)
	k, err := b.buildKernel(ctx, ref, tmp)
	if err == nil {
		err = writeJSONAtomic(filepath.Join(tmp, "kernel.json"), k)
	}
	if err == nil {
		os.RemoveAll(kdir) // a stampless leftover
		err = os.Rename(tmp, kdir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		st.Fail(err)
		return kernelOut{}, err
	}
	st.Done()
	b.log.Info("prepared kernel", "package", ref.Package, "version", ref.Version, "dir", kdir, "took", time.Since(t))
	return k, nil
}
