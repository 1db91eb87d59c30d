package vmm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images"
)

// realKernelPath returns the Debian kernel the integration tests boot: the
// one in the image cache, else one built with images.Build.
func realKernelPath(t *testing.T) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(images.DefaultCacheDir(), "kernel", "*", "vmlinuz-*"))
	if len(paths) > 0 {
		return paths[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	set, err := images.Build(ctx, images.Config{})
	if err != nil {
		t.Fatalf("images.Build: %v (no kernel in the cache either)", err)
	}
	return set.Kernel
}

func realKernel(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(realKernelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Setup header values of the synthetic bzImage.
const (
	synthSetupSects = 1 // protected-mode code at (1+1)*512
	synthPMOff      = 1024
	synthSize       = 8192
	synthJump       = 0x6a // header ends at 0x26c, as in Linux 6.1
	synthInitSize   = 16 << 20
	synthCmdlineMax = 2048
	synthInitrdMax  = 0x7fffffff
)

// synthKernel builds the smallest image ParseKernel accepts: a boot sector
// with a 2.15 setup header (Linux boot protocol) and 7 KiB of "code".
func synthKernel() []byte {
	img := make([]byte, synthSize)
	img[0x1f1] = synthSetupSects
	putU32(img[0x1f4:], (synthSize-synthPMOff)/16) // syssize
	putU16(img[bootFlagOff:], 0xaa55)
	img[0x200], img[0x201] = 0xeb, synthJump
	copy(img[headerMagicOff:], "HdrS")
	putU16(img[0x206:], 0x020f)
	img[loadFlagsOff] = loadedHigh
	putU32(img[0x22c:], synthInitrdMax)
	putU16(img[0x236:], xlfKernel64|2)
	putU32(img[0x238:], synthCmdlineMax-1)
	putU32(img[0x260:], synthInitSize)
	for i := synthPMOff; i < len(img); i++ {
		img[i] = byte(i)
	}
	return img
}

func TestParseKernelReal(t *testing.T) {
	img := realKernel(t)
	k, err := ParseKernel(img)
	if err != nil {
		t.Fatalf("ParseKernel(real kernel) = %v, want nil", err)
	}
	pmOff := (int(img[0x1f1]) + 1) * 512
	if got, want := len(k.Protected), len(img)-pmOff; got != want {
		t.Errorf("len(Protected) = %d, want %d", got, want)
	}
	if !bytes.Equal(k.Protected[:64], img[pmOff:pmOff+64]) {
		t.Errorf("Protected does not start at setup_sects+1 sectors (%#x)", pmOff)
	}
	if got, want := len(k.setup), 0x202+int(img[0x201])-setupHeaderOff; got != want {
		t.Errorf("len(setup) = %d, want %d", got, want)
	}
	if k.Header.Protocolversion < 0x020c || k.Header.XLoadFlags&xlfKernel64 == 0 || k.Header.CmdLineSize == 0 || k.Header.InitSize == 0 {
		t.Errorf("header %#x XLF %#x cmdline_size %d init_size %d: want a 64-bit 2.12+ kernel",
			k.Header.Protocolversion, k.Header.XLoadFlags, k.Header.CmdLineSize, k.Header.InitSize)
	}
	t.Logf("protocol %#x, init_size %d MiB, initrd_addr_max %#x, cmdline_size %d",
		k.Header.Protocolversion, k.Header.InitSize>>20, k.Header.InitrdAddrMax, k.Header.CmdLineSize)

	half := img[:len(img)/2]
	if _, err := ParseKernel(half); !errors.Is(err, ErrBadKernel) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("ParseKernel(first half of real kernel) = %v, want ErrBadKernel, truncated", err)
	}
}

func TestParseKernelSynthetic(t *testing.T) {
	k, err := ParseKernel(synthKernel())
	if err != nil {
		t.Fatalf("ParseKernel(synthetic) = %v, want nil", err)
	}
	if got, want := len(k.Protected), synthSize-synthPMOff; got != want {
		t.Errorf("len(Protected) = %d, want %d", got, want)
	}
	if !bytes.Equal(k.Protected, synthKernel()[synthPMOff:]) {
		t.Errorf("Protected is not the image from %#x on", synthPMOff)
	}
	if got, want := len(k.setup), 0x202+synthJump-setupHeaderOff; got != want {
		t.Errorf("len(setup) = %d, want %d", got, want)
	}

	// setup_sects 0 means 4 (boot protocol, "setup_sects").
	img := synthKernel()
	img[0x1f1] = 0
	putU32(img[0x1f4:], (synthSize-5*512)/16)
	if k, err := ParseKernel(img); err != nil || len(k.Protected) != synthSize-5*512 {
		t.Errorf("ParseKernel(setup_sects 0) = %v; want Protected from 5*512", err)
	}
}

func TestParseKernelBad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func([]byte) []byte
		detail string
	}{
		{"empty", func([]byte) []byte { return nil }, "only 0 bytes"},
		{"too short", func(b []byte) []byte { return b[:4095] }, "only 4095 bytes"},
		{"truncated", func(b []byte) []byte { return b[:synthSize-16] }, "truncated"},
		{"syssize too big", func(b []byte) []byte { putU32(b[0x1f4:], 1<<20); return b }, "truncated"},
		{"no HdrS", func(b []byte) []byte { copy(b[headerMagicOff:], "HdrX"); return b }, "HdrS"},
		{"no 0xAA55", func(b []byte) []byte { putU16(b[bootFlagOff:], 0x55aa); return b }, "0xAA55"},
		{"protocol 2.11", func(b []byte) []byte { putU16(b[0x206:], 0x020b); return b }, "boot protocol 2.11"},
		{"protocol 2.06", func(b []byte) []byte { putU16(b[0x206:], 0x0206); return b }, "boot protocol 2.06"},
		{"no XLF_KERNEL_64", func(b []byte) []byte { putU16(b[0x236:], 2); return b }, "XLF_KERNEL_64"},
		{"zImage", func(b []byte) []byte { b[loadFlagsOff] = 0; return b }, "zImage"},
		{"setup past end", func(b []byte) []byte { b[0x1f1] = 200; return b }, "setup of 200 sectors"},
		{"random", func(b []byte) []byte {
			for i := range b {
				b[i] = byte(i*7919 + i>>8)
			}
			return b
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKernel(tc.mod(synthKernel()))
			if !errors.Is(err, ErrBadKernel) {
				t.Fatalf("ParseKernel(%s) = %v, want ErrBadKernel", tc.name, err)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("ParseKernel(%s) = %q, want it to mention %q", tc.name, err, tc.detail)
			}
		})
	}
}

func TestZeroPage(t *testing.T) {
	img := synthKernel()
	k, err := ParseKernel(img)
	if err != nil {
		t.Fatal(err)
	}
	plan := bootPlan{initrdAddr: 0x1f000000, initrdSize: 0x123456}
	e820 := e820Map(4 << 30)
	zp, err := buildZeroPage(k, plan, e820)
	if err != nil {
		t.Fatalf("buildZeroPage = %v", err)
	}
	if len(zp) != 4096 {
		t.Fatalf("len(zero page) = %d, want 4096", len(zp))
	}
	// The setup header is copied as is, except for the fields the loader
	// writes (boot protocol, "Details of header fields").
	written := map[int]bool{typeOfLoaderOff: true, loadFlagsOff: true}
	for _, f := range []struct{ off, n int }{{ramdiskImageOff, 4}, {ramdiskSizeOff, 4}, {heapEndPtrOff, 2}, {cmdLinePtrOff, 4}} {
		for i := 0; i < f.n; i++ {
			written[f.off+i] = true
		}
	}
	hdrEnd := 0x202 + synthJump
	for o := setupHeaderOff; o < hdrEnd; o++ {
		if !written[o] && zp[o] != img[o] {
			t.Errorf("zero page[%#x] = %#x, want %#x (from the setup header)", o, zp[o], img[o])
		}
	}
	for o := hdrEnd; o < e820TableOff; o++ {
		if zp[o] != 0 {
			t.Errorf("zero page[%#x] = %#x past the setup header, want 0", o, zp[o])
		}
	}
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"type_of_loader", uint32(zp[typeOfLoaderOff]), 0xff},
		{"loadflags", uint32(zp[loadFlagsOff]), loadedHigh | canUseHeap},
		{"heap_end_ptr", uint32(getU16(zp[heapEndPtrOff:])), 0xfe00},
		{"cmd_line_ptr", getU32(zp[cmdLinePtrOff:]), cmdlineAddr},
		{"ramdisk_image", getU32(zp[ramdiskImageOff:]), 0x1f000000},
		{"ramdisk_size", getU32(zp[ramdiskSizeOff:]), 0x123456},
		{"e820_entries", uint32(zp[e820EntriesOff]), uint32(len(e820))},
	} {
		if f.got != f.want {
			t.Errorf("zero page %s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
	for i, want := range e820 {
		o := zp[e820TableOff+20*i:]
		got := E820Entry{getU64(o), getU64(o[8:]), getU32(o[16:])}
		if got != want {
			t.Errorf("zero page e820[%d] = %+v, want %+v", i, got, want)
		}
	}
	if o := e820TableOff + 20*len(e820); !bytes.Equal(zp[o:o+20], make([]byte, 20)) {
		t.Errorf("zero page e820[%d] = % x, want zeros", len(e820), zp[o:o+20])
	}

	if _, err := buildZeroPage(k, plan, make([]E820Entry, e820MaxEntries+1)); err == nil {
		t.Errorf("buildZeroPage(%d e820 entries) = nil, want error", e820MaxEntries+1)
	}
	zp, err = buildZeroPage(k, plan, make([]E820Entry, e820MaxEntries))
	if err != nil || zp[e820EntriesOff] != e820MaxEntries {
		t.Errorf("buildZeroPage(%d e820 entries) = %v, count %d; want nil, %d", e820MaxEntries, err, zp[e820EntriesOff], e820MaxEntries)
	}
}

func TestZeroPageRealKernel(t *testing.T) {
	img := realKernel(t)
	k, err := ParseKernel(img)
	if err != nil {
		t.Fatal(err)
	}
	zp, err := buildZeroPage(k, bootPlan{}, e820Map(512<<20))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(zp[headerMagicOff:headerMagicOff+4]), "HdrS"; got != want {
		t.Errorf("zero page header magic = %q, want %q", got, want)
	}
	if got, want := getU16(zp[0x206:]), k.Header.Protocolversion; got != want {
		t.Errorf("zero page version = %#x, want %#x", got, want)
	}
	if got, want := getU32(zp[0x260:]), k.Header.InitSize; got != want {
		t.Errorf("zero page init_size = %#x, want %#x", got, want)
	}
}

func TestPlanBoot(t *testing.T) {
	k, err := ParseKernel(synthKernel())
	if err != nil {
		t.Fatal(err)
	}
	kernelEnd := uint64(kernelAddr + synthInitSize)
	for _, tc := range []struct {
		name      string
		initrd    int
		mem       uint64
		addrMax   uint32
		wantAddr  uint64
		wantError string
	}{
		{"no initrd", 0, 512 << 20, synthInitrdMax, 512 << 20, ""},
		{"page sized", 4096, 512 << 20, synthInitrdMax, 512<<20 - 4096, ""},
		{"odd size", 10<<20 + 1, 512 << 20, synthInitrdMax, (512<<20 - (10<<20 + 1)) &^ 0xfff, ""},
		{"3 GiB", 1 << 20, 3 << 30, 0xffffffff, 3<<30 - 1<<20, ""},
		{"above hole", 1 << 20, 8 << 30, 0xffffffff, mmioHoleStart - 1<<20, ""},
		{"initrd_addr_max", 1 << 20, 4 << 30, synthInitrdMax, 2<<30 - 1<<20, ""},
		{"initrd_addr_max odd", 100, 4 << 30, 0x12345678, (0x12345679 - 100) &^ 0xfff, ""},
		{"initrd_addr_max 0", 1 << 20, 1 << 30, 0, 1<<30 - 1<<20, ""},
		{"tight", 1 << 20, kernelEnd + 32<<20 + 1<<20, synthInitrdMax, kernelEnd + 32<<20, ""},
		{"too small", 1 << 20, 48 << 20, synthInitrdMax, 0, "too small"},
		{"one page short", 1 << 20, kernelEnd + 32<<20 + 1<<20 - 4096, synthInitrdMax, 0, "too small"},
		{"initrd bigger than RAM", 1 << 30, 512 << 20, synthInitrdMax, 0, "too small"},
		// Plenty of RAM, but the initrd must end below initrd_addr_max:
		// the error must say so, not that 1 GiB is too small.
		{"initrd bigger than initrd_addr_max", 200 << 20, 1 << 30, 100 << 20, 0, "initrd_addr_max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k.Header.InitrdAddrMax = tc.addrMax
			p, err := planBoot(k, tc.initrd, "console=ttyS0", tc.mem)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("planBoot(%d, mem %#x) = %+v, %v; want error %q", tc.initrd, tc.mem, p, err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("planBoot(%d, mem %#x) = %v", tc.initrd, tc.mem, err)
			}
			if p.initrdAddr != tc.wantAddr || p.initrdSize != uint64(tc.initrd) {
				t.Errorf("planBoot(%d, mem %#x) = %#x+%#x, want %#x+%#x", tc.initrd, tc.mem, p.initrdAddr, p.initrdSize, tc.wantAddr, tc.initrd)
			}
			low, _ := ramRegions(tc.mem)
			end := p.initrdAddr + p.initrdSize
			switch {
			case p.initrdAddr%4096 != 0:
				t.Errorf("initrd at %#x: not page aligned", p.initrdAddr)
			case end > low:
				t.Errorf("initrd ends at %#x past low RAM %#x", end, low)
			case tc.addrMax != 0 && end > uint64(tc.addrMax)+1:
				t.Errorf("initrd ends at %#x past initrd_addr_max %#x", end, tc.addrMax)
			case p.initrdAddr < kernelEnd:
				t.Errorf("initrd at %#x overlaps the kernel (up to %#x)", p.initrdAddr, kernelEnd)
			case end+4096 <= min(low, uint64(tc.addrMax)+1) && tc.addrMax != 0:
				t.Errorf("initrd ends at %#x: not at the top (%#x)", end, min(low, uint64(tc.addrMax)+1))
			}
		})
	}
}

func TestPlanBootTooSmall(t *testing.T) {
	img := realKernel(t)
	k, err := ParseKernel(img)
	if err != nil {
		t.Fatal(err)
	}
	const initrd = 100 << 20
	_, err = planBoot(k, initrd, "", 64<<20)
	if err == nil {
		t.Fatalf("planBoot(100 MiB initrd, 64 MiB) = nil, want error")
	}
	for _, want := range []string{"64 MiB too small", "initrd (100 MiB)", "need at least"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("planBoot(100 MiB initrd, 64 MiB) = %q, want it to contain %q", err, want)
		}
	}
	// The size the message asks for must be enough, for any initrd size.
	kernelEnd := uint64(kernelAddr) + max(uint64(len(k.Protected)), uint64(k.Header.InitSize))
	edge := int((kernelEnd+32<<20+1<<20-1)&^(1<<20-1) - (kernelEnd + 32<<20) - 1 + 1<<20) // need<<20 == end of the headroom + size + 1
	for _, size := range []int{0, 1, 4095, 4097, initrd, initrd + 1<<20 - 1, initrd + 4097, edge, edge + 1, edge - 1} {
		_, err := planBoot(k, size, "", 64<<20)
		var need uint64
		if err == nil {
			t.Fatalf("planBoot(%d, 64 MiB) = nil, want error", size)
		}
		msg := err.Error()
		i := strings.LastIndex(msg, "need at least ")
		if i < 0 {
			t.Fatalf("planBoot(%d, 64 MiB) = %q: no \"need at least\"", size, msg)
		}
		for _, c := range msg[i+len("need at least "):] {
			if c < '0' || c > '9' {
				break
			}
			need = need*10 + uint64(c-'0')
		}
		if _, err := planBoot(k, size, "", need<<20); err != nil {
			t.Errorf("planBoot(%d, %d MiB) = %v; the previous error said %d MiB is enough", size, need, err, need)
		}
	}
}

func TestPlanBootCmdline(t *testing.T) {
	k, err := ParseKernel(synthKernel())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		limit     uint32 // cmdline_size
		n         int
		wantError string
	}{
		// cmdline_size is "the maximum size of the command line without
		// the terminating zero" (boot protocol, "cmdline_size"): Linux
		// sets it to COMMAND_LINE_SIZE-1 and copies COMMAND_LINE_SIZE
		// bytes, so a line of exactly cmdline_size bytes fits.
		{"under limit", synthCmdlineMax - 1, synthCmdlineMax - 2, ""},
		{"at limit", synthCmdlineMax - 1, synthCmdlineMax - 1, ""},
		{"over limit", synthCmdlineMax - 1, synthCmdlineMax, "command line of 2048 bytes exceeds the kernel's limit of 2047"},
		{"far over limit", 255, 1000, "command line of 1000 bytes exceeds the kernel's limit"},
		{"no limit in header", 0, 4096, ""},
		{"over the space below the MP table", 0, mptableAddr - cmdlineAddr, "too long"},
		{"big kernel limit", 1 << 20, mptableAddr - cmdlineAddr, "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k.Header.CmdLineSize = tc.limit
			_, err := planBoot(k, 0, strings.Repeat("x", tc.n), 512<<20)
			switch {
			case tc.wantError == "" && err != nil:
				t.Errorf("planBoot(cmdline of %d, cmdline_size %d) = %v, want nil", tc.n, tc.limit, err)
			case tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)):
				t.Errorf("planBoot(cmdline of %d, cmdline_size %d) = %v, want error %q", tc.n, tc.limit, err, tc.wantError)
			}
		})
	}
}
