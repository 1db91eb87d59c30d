// Package images builds the guests hvnet's tests boot: Debian's cloud kernel,
// the modules the tests need, and a u-root initramfs whose /init is the hvnet
// guest agent (hvnet/images/agent; its command line and console lines are
// described by hvnet/images/agentcfg).
//
// Build works incrementally in a cache directory shared by all test
// processes: the first call downloads the kernel with apt and builds the
// initramfs (about a minute), later calls find the manifest up to date and
// return at once.
//
//	set, err := images.Build(ctx, images.Config{})
//	// boot set.Kernel with set.Initrd and
//	// "console=ttyS0 " + agentcfg.Cmdline{...}.String()
//
// The cache directory holds:
//
//	lock                      flock(2) taken while building
//	manifest.json             the last build: its input key and its Set
//	apt-resolve.json          apt's answer, keyed by the state of /var/lib/apt/lists
//	debs/PKG_VER_amd64.deb    the kernel package, as apt-get download fetched it
//	kernel/PKG_VER_KEY/       vmlinuz-KVER, config-KVER, kernel.json (stamp) and
//	                          modules/KVER/ (the shipped modules, modules.dep, modules.builtin)
//	initramfs/KEY.cpio        uncompressed newc initramfs
//	bin/u-root                the u-root tool, built from go.mod's version
//
// The kernel entry is keyed by package, version and module list; the
// initramfs by that, the agent's sources, go.sum, tools.go, the command
// list, the extra binaries and the Go version. Old entries beyond the two
// newest are removed after each build.
package images

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/internal/progress"
)

// Version is the builder's version; bumping it rebuilds every cache entry.
// Bump it whenever a change here changes what is built.
const Version = "images-4"

// Config says where and how to build.
type Config struct {
	CacheDir string       // default: DefaultCacheDir()
	Log      hclog.Logger // nil: no logging
	Progress io.Writer    // human progress lines (may be nil)
	// Steps shows a build that has work to do as steps with their
	// elapsed time (a spinner on a terminal: progress.New); nil: plain
	// lines on Progress. A build with nothing to do shows nothing.
	Steps *progress.Reporter

	// SourceDir is the root of the hvnet module (the agent and the u-root
	// commands are built from it). Default: found from this package's
	// source file, else from "go env GOMOD" in the working directory.
	SourceDir string
}

// Set is one built guest image.
type Set struct {
	Kernel         string `json:"kernel"`          // path to the bzImage
	Vmlinux        string `json:"vmlinux"`         // the same kernel uncompressed (ELF vmlinux): boots faster
	Initrd         string `json:"initrd"`          // path to the guest initramfs (uncompressed newc cpio)
	ModulesDir     string `json:"modules_dir"`     // host path of the /lib/modules/<ver> tree shipped in Initrd
	KernelVersion  string `json:"kernel_version"`  // e.g. "6.1.0-48-cloud-amd64"
	Package        string `json:"package"`         // e.g. "linux-image-6.1.0-48-cloud-amd64"
	PackageVersion string `json:"package_version"` // Debian version of that package, e.g. "6.1.172-1"
}

// DefaultCacheDir is $HVNET_CACHE if set, else os.UserCacheDir()/hvnet
// (e.g. /root/.cache/hvnet), else a directory under os.TempDir().
func DefaultCacheDir() string {
	if d := os.Getenv("HVNET_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "hvnet")
	}
	return filepath.Join(os.TempDir(), "hvnet-cache")
}

// Build returns the image set for the current inputs, building what is
// missing or out of date. It is safe to call from several processes at once.
func Build(ctx context.Context, cfg Config) (*Set, error) {
	b, err := newBuilder(cfg)
	if err != nil {
		return nil, err
	}
	return b.build(ctx)
}
