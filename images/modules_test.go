package images

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeModule writes a minimal ELF64 relocatable file with a .modinfo
// section holding the given key=value strings, like a real .ko.
func writeModule(t *testing.T, path string, modinfo ...string) {
	t.Helper()
	var info bytes.Buffer
	for _, s := range modinfo {
		info.WriteString(s)
		info.WriteByte(0)
		info.WriteString("\x00\x00") // alignment padding, as in real modules
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(info.Len())
	shOff := strOff + uint64(len(shstr))
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, h)
	b.Write(info.Bytes())
	b.Write(shstr)
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: infoOff, Size: uint64(info.Len()), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	} {
		binary.Write(&b, binary.LittleEndian, s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModinfoSynthetic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "net_failover.ko")
	writeModule(t, p, "license=GPL", "depends=failover,virtio-ring", "alias=a", "alias=b", "name=net_failover")
	mi, err := Modinfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mi["alias"], []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alias = %q, want %q", got, want)
	}
	deps, err := moduleDeps(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"failover", "virtio_ring"}; !reflect.DeepEqual(deps, want) {
		t.Errorf("moduleDeps = %q, want %q", deps, want)
	}
	writeModule(t, p, "license=GPL", "depends=")
	if deps, err := moduleDeps(p); err != nil || len(deps) != 0 {
		t.Errorf("moduleDeps(empty depends=) = %q, %v, want none", deps, err)
	}
}

func TestModinfoErrors(t *testing.T) {
	d := t.TempDir()
	notELF := filepath.Join(d, "x.ko")
	os.WriteFile(notELF, []byte("not an ELF file at all, really not"), 0o644)
	if _, err := Modinfo(notELF); err == nil {
		t.Errorf("Modinfo(not ELF) = nil error")
	}
	// An ELF without .modinfo: the test binary itself.
	exe, _ := os.Executable()
	if _, err := Modinfo(exe); err == nil || !strings.Contains(err.Error(), ".modinfo") {
		t.Errorf("Modinfo(test binary) = %v, want a no .modinfo error", err)
	}
}

// TestModinfoReal reads a module of the kernel package when a previous
// Build left one in the cache.
func TestModinfoReal(t *testing.T) {
	ms, _ := filepath.Glob(filepath.Join(DefaultCacheDir(), "kernel", "*", "modules", "*", "kernel", "drivers", "net", "virtio_net.ko"))
	if len(ms) == 0 {
		t.Skip("no kernel in the cache yet (run TestBuild)")
	}
	deps, err := moduleDeps(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"net_failover", "virtio", "virtio_ring"} {
		if !strings.Contains(","+strings.Join(deps, ",")+",", ","+want+",") {
			t.Errorf("%s depends on %q, want %s among them", ms[0], deps, want)
		}
	}
	mi, _ := Modinfo(ms[0])
	if len(mi["vermagic"]) != 1 {
		t.Errorf("vermagic = %q, want one", mi["vermagic"])
	}
}

func fakeTree(t *testing.T) (string, map[string][]string) {
	root := t.TempDir()
	mods := map[string][]string{
		"kernel/net/8021q/8021q.ko":      {"depends=mrp,garp,stp,llc"},
		"kernel/net/802/garp.ko":         {"depends=stp,llc"},
		"kernel/net/802/mrp.ko":          {"depends="},
		"kernel/net/802/stp.ko":          {"depends=llc"},
		"kernel/net/llc/llc.ko":          {"depends="},
		"kernel/drivers/net/veth.ko":     {"depends="},
		"kernel/drivers/net/unused.ko":   {"depends=llc"},
		"kernel/arch/x86/kvm/kvm-amd.ko": {"depends=kvm"},
		"kernel/arch/x86/kvm/kvm.ko":     {"depends=irqbypass"},
		"kernel/virt/lib/irqbypass.ko":   {},
	}
	for p, info := range mods {
		writeModule(t, filepath.Join(root, p), append([]string{"license=GPL"}, info...)...)
	}
	return root, mods
}

func TestShipModules(t *testing.T) {
	src, _ := fakeTree(t)
	os.WriteFile(filepath.Join(src, "modules.builtin"), []byte("kernel/net/packet/af_packet.ko\n"), 0o644)
	dst := t.TempDir()
	n, err := shipModules(src, dst, []string{"8021q", "kvm_amd", "veth"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 {
		t.Errorf("shipped %d modules, want 9", n)
	}
	dep, err := os.ReadFile(filepath.Join(dst, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	// depmod's format and order: sorted by path, dependencies listed so
	// that loading them back to front satisfies each one's own.
	want := `kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/drivers/net/veth.ko:
kernel/net/802/garp.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/mrp.ko:
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/8021q/8021q.ko: kernel/net/802/mrp.ko kernel/net/802/garp.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/virt/lib/irqbypass.ko:
`
	if string(dep) != want {
		t.Errorf("modules.dep =\n%s\nwant\n%s", dep, want)
	}
	if exists(filepath.Join(dst, "kernel/drivers/net/unused.ko")) {
		t.Errorf("unused.ko shipped")
	}
	if !exists(filepath.Join(dst, "kernel/net/802/garp.ko"), filepath.Join(dst, "modules.builtin")) {
		t.Errorf("garp.ko or modules.builtin missing")
	}
}

func TestShipModulesMissing(t *testing.T) {
	src, _ := fakeTree(t)
	writeModule(t, filepath.Join(src, "kernel/x/needy.ko"), "depends=ghost")
	for _, tt := range []struct{ root, wantErr string }{
		{"nosuch", "module nosuch is not in the package"},
		{"needy", "module ghost (needed by needy)"},
	} {
		_, err := shipModules(src, t.TempDir(), []string{tt.root})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("shipModules(%s) = %v, want an error containing %q", tt.root, err, tt.wantErr)
		}
	}
}

func TestLoadOrderCycle(t *testing.T) {
	g := depGraph{"a": {"b"}, "b": {"c"}, "c": {"a"}}
	if _, err := g.loadOrder("a"); err == nil || !strings.Contains(err.Error(), "a -> b -> c -> a") {
		t.Errorf("loadOrder(cycle) = %v, want a cycle error", err)
	}
}

func TestParseDepends(t *testing.T) {
	out := "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n  Recommends: firmware\n"
	if got, err := parseDepends([]byte(out)); err != nil || got != "linux-image-6.1.0-48-cloud-amd64" {
		t.Errorf("parseDepends = %q, %v", got, err)
	}
	if _, err := parseDepends([]byte("linux-image-cloud-amd64\n  Depends: foo\n")); err == nil {
		t.Errorf("parseDepends(no kernel) = nil error")
	}
}
