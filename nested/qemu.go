package nested

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/u-root/u-root/pkg/ldd"
)

// qemuFirmware is what qemu-system-x86_64 reads from its data directory to
// boot a kernel directly (-kernel) on the pc and q35 machines.
// It searches /usr/share/qemu, /usr/share/seabios and /usr/lib/ipxe/qemu
// ("qemu-system-x86_64 -L help").
var qemuFirmware = []string{"bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin", "efi-virtio.rom"}

var qemuDataDirs = []string{"/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"}

// QEMUFiles returns the files that put this host's qemu-system-x86_64 into
// the nested test host: the binary at /usr/bin, its shared libraries and
// dynamic loader at their paths, and the firmware it needs for -kernel
// boots, and the virtio-net option ROM. Guests started there need
// -nodefaults (no VGA BIOS is shipped).
func QEMUFiles() ([]File, error) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("nested: qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
	}
	libs, err := ldd.List(bin)
	if err != nil {
		return nil, fmt.Errorf("nested: libraries of %s: %w", bin, err)
	}
	files := []File{{Src: bin, Dst: "/usr/bin/qemu-system-x86_64"}}
	for _, l := range libs {
		files = append(files, File{Src: l, Dst: l})
	}
	for _, fw := range qemuFirmware {
		found := false
		for _, d := range qemuDataDirs {
			p := filepath.Join(d, fw)
			if _, err := os.Stat(p); err == nil {
				files = append(files, File{Src: p, Dst: p})
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("nested: QEMU firmware %s not found in %v", fw, qemuDataDirs)
		}
	}
	return files, nil
}
