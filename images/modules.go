package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// rootModules are the modules the images ship; their dependencies come
// along. virtio-net for test guests, 8021q for VLAN tests, and kvm-amd,
// tun, veth, bridge and bonding (a Linux 802.3ad peer for bond tests) for
// the nested test host.
var rootModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net",
	"8021q",
	"irqbypass", "kvm", "kvm_amd",
	"tun", "veth", "bridge", "bonding",
}

// modName is a module's name as the kernel knows it: file name without
// .ko, dashes as underscores.
func modName(file string) string {
	n := filepath.Base(file)
	n = strings.TrimSuffix(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

// Modinfo reads the NUL-separated key=value strings of a module's .modinfo
// ELF section (what modinfo(8) prints). Repeated keys keep every value.
func Modinfo(path string) (map[string][]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", path, err)
	}
	return parseModinfo(data), nil
}

func parseModinfo(data []byte) map[string][]string {
	m := make(map[string][]string)
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok || len(k) == 0 {
			continue // padding between strings
		}
		m[string(k)] = append(m[string(k)], string(v))
	}
	return m
}

// moduleDeps returns the modules a module needs loaded first, from
// depends= in its .modinfo.
func moduleDeps(path string) ([]string, error) {
	mi, err := Modinfo(path)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, d := range mi["depends"] {
		for _, n := range strings.Split(d, ",") {
			if n = strings.TrimSpace(n); n != "" {
				deps = append(deps, strings.ReplaceAll(n, "-", "_"))
			}
		}
	}
	return deps, nil
}

// moduleTree indexes a /lib/modules/<ver> tree: module name to path
// relative to the tree.
func moduleTree(root string) (map[string]string, error) {
	idx := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		idx[modName(p)] = rel
		return nil
	})
	return idx, err
}

// depGraph is module name -> direct dependencies, for the modules shipped.
type depGraph map[string][]string

// closure walks depends= from roots through the tree index, reading each
// module's .modinfo once through readDeps.
func closure(roots []string, idx map[string]string, readDeps func(rel string) ([]string, error)) (depGraph, error) {
	g := make(depGraph)
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if _, done := g[name]; done {
			return nil
		}
		rel, ok := idx[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is not in the package", name, from)
			}
			return fmt.Errorf("module %s is not in the package", name)
		}
		deps, err := readDeps(rel)
		if err != nil {
			return err
		}
		g[name] = deps
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := visit(r, ""); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// loadOrder returns name's transitive dependencies, each after its own
// dependencies (the order insmod needs), without name itself. It fails on
// a dependency cycle.
func (g depGraph) loadOrder(name string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(n string, stack []string) error
	visit = func(n string, stack []string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, n), " -> "))
		case 2:
			return nil
		}
		state[n] = 1
		deps := slices.Clone(g[n])
		slices.Sort(deps) // deterministic output
		for _, d := range deps {
			if err := visit(d, append(stack, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	if err := visit(name, nil); err != nil {
		return nil, err
	}
	return order[:len(order)-1], nil
}

// modulesDep renders modules.dep as depmod(8) does: one line per module,
// "path: dep paths...", the dependencies listed so that the last one is
// loaded first (modprobe loads the list back to front). Lines are sorted
// by path.
func modulesDep(g depGraph, idx map[string]string) (string, error) {
	type line struct{ path, text string }
	var lines []line
	for _, n := range sortedKeys(g) {
		order, err := g.loadOrder(n)
		if err != nil {
			return "", err
		}
		paths := make([]string, 0, len(order))
		for i := len(order) - 1; i >= 0; i-- {
			paths = append(paths, idx[order[i]])
		}
		t := idx[n] + ":"
		if len(paths) > 0 {
			t += " " + strings.Join(paths, " ")
		}
		lines = append(lines, line{idx[n], t})
	}
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.path, b.path) })
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString(l.text + "\n")
	}
	return sb.String(), nil
}

// shipModules copies roots and their dependencies from the src module tree
// to dst, with a modules.dep for them and the package's modules.builtin
// (so that asking for a built-in module is not an error). It returns the
// number of modules copied.
func shipModules(src, dst string, roots []string) (int, error) {
	idx, err := moduleTree(src)
	if err != nil {
		return 0, err
	}
	g, err := closure(roots, idx, func(rel string) ([]string, error) {
		return moduleDeps(filepath.Join(src, rel))
	})
	if err != nil {
		return 0, err
	}
	dep, err := modulesDep(g, idx)
	if err != nil {
		return 0, err
	}
	for n := range g {
		if err := copyFile(filepath.Join(src, idx[n]), filepath.Join(dst, idx[n])); err != nil {
			return 0, err
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.dep"), []byte(dep), 0o644); err != nil {
		return 0, err
	}
	for _, f := range []string{"modules.builtin"} {
		if p := filepath.Join(src, f); exists(p) {
			if err := copyFile(p, filepath.Join(dst, f)); err != nil {
				return 0, err
			}
		}
	}
	return len(g), nil
}
