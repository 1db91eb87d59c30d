package images

import (
	"github.com/u-root/u-root/pkg/boot/bzimage"

	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// metaPackage is Debian's "current cloud kernel" package; it depends on
// exactly one linux-image-<abi>-cloud-amd64.
const metaPackage = "linux-image-cloud-amd64"

var kernelPackage = regexp.MustCompile(`^linux-image-[0-9][A-Za-z0-9.+-]*-cloud-amd64$`)

// aptListsDir holds apt's package lists; their names, sizes and times
// change when "apt-get update" brings news.
const aptListsDir = "/var/lib/apt/lists"

// aptResolve asks apt which kernel package linux-image-cloud-amd64 depends
// on now and its version. apt-cache takes about half a second here (no
// persistent pkgcache), so the answer is remembered in the cache, keyed by
// the state of apt's lists.
func (b *builder) aptResolve(ctx context.Context) (kernelRef, error) {
	fp, fpErr := aptListsFingerprint()
	memo := filepath.Join(b.cacheDir, "apt-resolve.json")
	type memoJSON struct {
		Lists string    `json:"lists"`
		Ref   kernelRef `json:"ref"`
	}
	var m memoJSON
	if fpErr == nil && readJSON(memo, &m) == nil && m.Lists == fp && m.Ref.Package != "" {
		return m.Ref, nil
	}
	ref, err := aptResolveNow(ctx)
	if err != nil {
		return kernelRef{}, err
	}
	if fpErr == nil {
		if err := writeJSONAtomic(memo, memoJSON{Lists: fp, Ref: ref}); err != nil {
			b.log.Warn("cannot remember apt's answer", "error", err)
		}
	}
	return ref, nil
}

func aptListsFingerprint() (string, error) {
	ents, err := os.ReadDir(aptListsDir)
	if err != nil {
		return "", err
	}
	h := newHasher()
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		h.add(e.Name(), fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano()))
	}
	return h.key(), nil
}

func aptError(cmd string, err error, out []byte) error {
	msg := strings.TrimSpace(string(out))
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("images: %s: %v (the images are built with Debian's apt)", cmd, err)
	}
	return fmt.Errorf("images: %s failed: %v: %s (is the package known? try \"apt-get update\")", cmd, err, msg)
}

func aptResolveNow(ctx context.Context) (kernelRef, error) {
	cmd := "apt-cache depends " + metaPackage
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", metaPackage).CombinedOutput()
	if err != nil {
		return kernelRef{}, aptError(cmd, err, out)
	}
	pkg, err := parseDepends(out)
	if err != nil {
		return kernelRef{}, fmt.Errorf("images: %s: %w (try \"apt-get update\")", cmd, err)
	}
	cmd = "apt-cache show --no-all-versions " + pkg
	out, err = exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).CombinedOutput()
	if err != nil {
		return kernelRef{}, aptError(cmd, err, out)
	}
	ver := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
			ver = strings.TrimSpace(v)
			break
		}
	}
	if ver == "" {
		return kernelRef{}, fmt.Errorf("images: %s: no Version field (try \"apt-get update\")", cmd)
	}
	return kernelRef{Package: pkg, Version: ver}, nil
}

// parseDepends picks the kernel image out of "apt-cache depends" output.
func parseDepends(out []byte) (string, error) {
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && kernelPackage.MatchString(f[1]) {
			found = append(found, f[1])
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no linux-image-*-cloud-amd64 dependency in %q", strings.TrimSpace(string(out)))
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("several kernel dependencies: %v", found)
}

// aptKernel downloads ref with apt (which checks its signature chain),
// unpacks it and keeps the bzImage and the modules in rootModules with their
// dependencies, plus a generated modules.dep.
func (b *builder) aptKernel(ctx context.Context, ref kernelRef, dir string) (kernelOut, error) {
	deb, err := b.download(ctx, ref)
	if err != nil {
		return kernelOut{}, err
	}
	x := dir + ".x"
	os.RemoveAll(x)
	defer os.RemoveAll(x)
	b.steps.Note("unpacking")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", deb, x).CombinedOutput(); err != nil {
		return kernelOut{}, fmt.Errorf("images: dpkg -x %s: %v: %s", deb, err, strings.TrimSpace(string(out)))
	}
	bz, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(bz) != 1 {
		return kernelOut{}, fmt.Errorf("images: %s: want one boot/vmlinuz-*, found %d", deb, len(bz))
	}
	kver := strings.TrimPrefix(filepath.Base(bz[0]), "vmlinuz-")
	var srcMods string
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if p := filepath.Join(x, d, kver); exists(p) {
			srcMods = p
			break
		}
	}
	if srcMods == "" {
		return kernelOut{}, fmt.Errorf("images: %s has no lib/modules/%s", deb, kver)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return kernelOut{}, err
	}
	k := kernelOut{
		Kernel:        "vmlinuz-" + kver,
		ModulesDir:    filepath.Join("modules", kver),
		KernelVersion: kver,
	}
	if err := copyFile(bz[0], filepath.Join(dir, k.Kernel)); err != nil {
		return kernelOut{}, err
	}
	// The same kernel, decompressed: the VMM boots an ELF vmlinux
	// directly, which skips the decompressor at every boot.
	k.Vmlinux = "vmlinux-" + kver
	b.steps.Note("decompressing vmlinux")
	if err := extractVmlinux(bz[0], filepath.Join(dir, k.Vmlinux)); err != nil {
		return kernelOut{}, fmt.Errorf("images: %s: %w", ref.Package, err)
	}
	if cfg := filepath.Join(x, "boot", "config-"+kver); exists(cfg) {
		if err := copyFile(cfg, filepath.Join(dir, "config-"+kver)); err != nil {
			return kernelOut{}, err
		}
	}
	b.steps.Note("selecting modules")
	n, err := shipModules(srcMods, filepath.Join(dir, k.ModulesDir), rootModules)
	if err != nil {
		return kernelOut{}, fmt.Errorf("images: %s: %w", ref.Package, err)
	}
	b.log.Info("modules selected", "count", n, "kernel", kver)
	return k, nil
}

// download fetches the .deb into CACHE/debs unless it is there already.
func (b *builder) download(ctx context.Context, ref kernelRef) (string, error) {
	debs := filepath.Join(b.cacheDir, "debs")
	// apt-get download names files PKG_VERSION_ARCH.deb, with ':' escaped.
	want := ref.Package + "_" + strings.ReplaceAll(ref.Version, ":", "%3a") + "_amd64.deb"
	if p := filepath.Join(debs, want); exists(p) {
		return p, nil
	}
	tmp := filepath.Join(debs, fmt.Sprintf("tmp-%d", os.Getpid()))
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	b.steps.Note("downloading with apt-get")
	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root", ref.Package + "=" + ref.Version}
	c := exec.CommandContext(ctx, "apt-get", args...)
	c.Dir = tmp
	if out, err := c.CombinedOutput(); err != nil {
		return "", aptError("apt-get "+strings.Join(args, " "), err, out)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("images: apt-get download %s left %d .deb files", ref.Package, len(got))
	}
	p := filepath.Join(debs, filepath.Base(got[0]))
	if err := os.Rename(got[0], p); err != nil {
		return "", err
	}
	return p, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// extractVmlinux writes the ELF kernel inside a bzImage to dst.
func extractVmlinux(bzPath, dst string) error {
	img, err := os.ReadFile(bzPath)
	if err != nil {
		return err
	}
	var bz bzimage.BzImage
	if err := bz.UnmarshalBinary(img); err != nil {
		return fmt.Errorf("decompressing %s: %w", filepath.Base(bzPath), err)
	}
	if _, err := bz.ELF(); err != nil {
		return fmt.Errorf("%s holds no ELF kernel: %w", filepath.Base(bzPath), err)
	}
	return os.WriteFile(dst, bz.KernelCode, 0o644)
}
