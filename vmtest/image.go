package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/ldd"

	"github.com/hvnet/hvnet/images"
)

// Image is what a test puts into its guests on top of hvnet's guest image
// (the agent, u-root's core commands, iperf3): the user's own Go programs,
// Go test binaries, host programs and files. BuildImage builds it once per
// content; Nest carries it into the nested test host.
type Image struct {
	// Commands are Go packages (import paths, or paths relative to Dir
	// such as "./cmd/echod") built as static linux/amd64 programs into
	// /bin/NAME, NAME being the package path's last element.
	Commands []string
	// Tests are Go packages whose test binaries go to /tests/NAME.test,
	// for a guest script's `/init gotest /tests/NAME.test [FLAG...]`
	// (ReportGoTests turns what it sends into the host test's subtests).
	Tests []string
	// Cover builds the Tests with -cover (run them with `/init gotest
	// -cover`; the profile comes back with their results).
	Cover bool
	// Binaries are host programs copied to the same path in the guest,
	// with the shared libraries they load (ldd).
	Binaries []string
	// Files are extra files (contents or host files).
	Files []images.OverlayFile
	// Dir is where the go commands run, which decides the module they
	// build in (default: the test's working directory, its package's).
	Dir string
}

// EnvImagePrefix + an Image's key names, inside the nested test host,
// the initramfs Nest built for that Image.
const EnvImagePrefix = "HVNET_IMAGE_"

// key identifies an Image's specification (not its contents: inside the
// nested test host there is no Go toolchain to rebuild and compare). Dir
// goes in as given: the test runs in another directory in there.
func (img Image) key() (string, error) {
	s := img
	var files []string
	for _, f := range s.Files {
		h := sha256.Sum256(f.Data)
		files = append(files, fmt.Sprintf("%s %s %o %x", f.Path, f.Source, f.Mode, h[:8]))
	}
	s.Files = nil
	b, err := json.Marshal(struct {
		Image
		Files []string
	}{s, files})
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return strings.ToUpper(hex.EncodeToString(h[:8])), nil
}

var (
	imgMu    sync.Mutex
	imgBuilt = map[string]*images.Set{} // by key, this process's builds
)

// BuildImage returns hvnet's guest image with img added: the kernel is
// Images(t)'s, the initramfs that one followed by an archive of img's
// files (the kernel unpacks both). Built images are cached by content in
// the image cache directory (images.DefaultCacheDir()/vmtest), so a test
// run again with nothing changed only re-runs the go builds (cached by Go)
// and hashes. Inside the nested test host it returns what Nest built on
// the host (NestOptions.Images must list img).
func BuildImage(t testing.TB, img Image) *images.Set {
	t.Helper()
	key, err := img.key()
	if err != nil {
		t.Fatalf("vmtest: image: %v", err)
	}
	base := Images(t)
	if InL1() {
		p := os.Getenv(EnvImagePrefix + key)
		if p == "" {
			t.Fatalf("vmtest: this image was not carried into the nested test host: list it in NestOptions.Images")
		}
		return &images.Set{Kernel: base.Kernel, Vmlinux: base.Vmlinux, Initrd: p}
	}
	imgMu.Lock()
	defer imgMu.Unlock()
	if s, ok := imgBuilt[key]; ok {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	initrd, err := buildImage(ctx, img, base.Initrd, filepath.Join(images.DefaultCacheDir(), "vmtest"))
	if err != nil {
		t.Fatalf("vmtest: image: %v", err)
	}
	s := *base
	s.Initrd = initrd
	imgBuilt[key] = &s
	return &s
}

// buildImage builds img's files and appends them to initrd in cacheDir,
// named by the hash of everything that goes in.
func buildImage(ctx context.Context, img Image, initrd, cacheDir string) (string, error) {
	dir := img.Dir
	if dir == "" {
		dir = "."
	}
	work, err := os.MkdirTemp("", "hvnet-vmtest-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	var files []images.OverlayFile
	names := map[string]string{} // guest path → what put it there
	add := func(f images.OverlayFile, what string) error {
		if prev, ok := names[f.Path]; ok {
			return fmt.Errorf("%s and %s both go to %s in the guest", prev, what, f.Path)
		}
		names[f.Path] = what
		files = append(files, f)
		return nil
	}
	goEnv := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}
	for _, pkg := range img.Commands {
		out := filepath.Join(work, "bin", path.Base(pkg))
		if err := goRun(ctx, dir, goEnv, "build", "-trimpath", "-o", out, pkg); err != nil {
			return "", fmt.Errorf("command %s: %w", pkg, err)
		}
		if err := add(images.OverlayFile{Path: "/bin/" + path.Base(pkg), Source: out, Mode: 0o755}, "command "+pkg); err != nil {
			return "", err
		}
	}
	for _, pkg := range img.Tests {
		name := path.Base(pkg) + ".test"
		out := filepath.Join(work, "tests", name)
		args := []string{"test", "-c", "-trimpath", "-o", out}
		if img.Cover {
			args = append(args, "-cover")
		}
		if err := goRun(ctx, dir, goEnv, append(args, pkg)...); err != nil {
			return "", fmt.Errorf("tests of %s: %w", pkg, err)
		}
		if _, err := os.Stat(out); err != nil {
			return "", fmt.Errorf("tests of %s: go test -c wrote no binary (no test files?): %w", pkg, err)
		}
		if err := add(images.OverlayFile{Path: "/tests/" + name, Source: out, Mode: 0o755}, "tests of "+pkg); err != nil {
			return "", err
		}
	}
	for _, bin := range img.Binaries {
		if !filepath.IsAbs(bin) {
			p, err := exec.LookPath(bin)
			if err != nil {
				return "", fmt.Errorf("binary %s: %w", bin, err)
			}
			bin = p
		}
		if err := add(images.OverlayFile{Path: bin, Source: bin, Mode: 0o755}, "binary "+bin); err != nil {
			return "", err
		}
		libs, err := ldd.List(bin)
		if err != nil {
			return "", fmt.Errorf("binary %s: its libraries: %w", bin, err)
		}
		for _, l := range libs {
			if _, ok := names[l]; ok {
				continue // shared with another binary
			}
			if err := add(images.OverlayFile{Path: l, Source: l, Mode: 0o755}, "library of "+bin); err != nil {
				return "", err
			}
		}
	}
	for _, f := range img.Files {
		if !path.IsAbs(f.Path) {
			return "", fmt.Errorf("file %s: the guest path must be absolute", f.Path)
		}
		if err := add(f, "file "+f.Path); err != nil {
			return "", err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	sum, err := contentKey(initrd, files)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(cacheDir, sum+".cpio")
	if _, err := os.Stat(out); err == nil {
		now := time.Now()
		_ = os.Chtimes(out, now, now) // recently used: kept by images.Prune
		return out, nil
	}
	if err := images.AppendOverlay(out, initrd, files); err != nil {
		return "", err
	}
	images.Prune(cacheDir, out, keepImages, func(p string) { os.RemoveAll(p) })
	return out, nil
}

// keepImages is how many built images the cache keeps besides the
// current one (the most recently used).
const keepImages = 8

// contentKey hashes the base initramfs's identity and every file's guest
// path, mode and contents.
func contentKey(initrd string, files []images.OverlayFile) (string, error) {
	h := sha256.New()
	fi, err := os.Stat(initrd)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "base %s %d %d\n", initrd, fi.Size(), fi.ModTime().UnixNano())
	for _, f := range files {
		fmt.Fprintf(h, "file %s %o\n", f.Path, f.Mode)
		if f.Data != nil {
			h.Write(f.Data)
			continue
		}
		r, err := os.Open(f.Source)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// goRun runs the go command in dir.
func goRun(ctx context.Context, dir string, env []string, args ...string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}
