package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Commands are the u-root commands in every image, besides the agent.
// Each must be imported by the hvnet module's tools.go, so that u-root's
// module-mode build finds it in go.mod.
var Commands = []string{
	"cat", "cmp", "cp", "date", "dd", "dmesg", "echo", "false", "free", "grep", "gosh",
	"head", "hexdump", "insmod", "ip", "kill", "ln", "ls", "lsmod", "md5sum", "mkdir",
	"mount", "mv", "netcat", "ping", "printenv", "ps", "pwd", "readlink", "rm", "rmmod",
	"seq", "sleep", "sync", "tail", "tee", "touch", "true", "umount", "uname", "uptime",
	"wc", "wget",
}

// ExtraBinaries are host programs copied into every image with the shared
// libraries they need, and the Debian package that provides each.
var ExtraBinaries = map[string]string{
	"/usr/bin/iperf3": "iperf3",
}

const urootPackage = "github.com/u-root/u-root"

// urootBuildTags are Go build tags for the busybox. goshsmall gives gosh a
// plain line reader: its default editor (bubbline) waits for terminal
// replies that a serial console does not send.
const urootBuildTags = "goshsmall"

// agentDirs hold the agent's sources, relative to the module root.
var agentDirs = []string{"images/agent", "images/agentcfg", "vmtest/event"}

// hashSources hashes everything the initramfs is built from except the
// kernel: the agent's sources, go.mod/go.sum (the u-root version and the
// commands' dependencies), the command list, the extra binaries and the
// Go toolchain.
func (b *builder) hashSources() (string, error) {
	h := newHasher()
	h.add("builder", Version)
	h.add("commands", strings.Join(Commands, ","))
	h.add("tags", urootBuildTags)
	for _, d := range agentDirs {
		files, err := filepath.Glob(filepath.Join(b.srcDir, d, "*.go"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			if err := h.addFile("src", f); err != nil {
				return "", err
			}
		}
	}
	for _, f := range []string{"go.sum", "tools.go"} {
		if err := h.addFile("mod", filepath.Join(b.srcDir, f)); err != nil {
			return "", err
		}
	}
	for _, bin := range sortedKeys(ExtraBinaries) {
		fi, err := os.Stat(bin)
		if err != nil {
			return "", fmt.Errorf("%s is needed in the guest image: %w (run \"apt-get install %s\")", bin, err, ExtraBinaries[bin])
		}
		h.add("extra", fmt.Sprintf("%s %d %d", bin, fi.Size(), fi.ModTime().UnixNano()))
	}
	h.add("go", goVersion())
	return h.key(), nil
}

// goVersion is the toolchain's version; builds shared a process should not
// ask go more than once.
func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// uroot builds the initramfs: u-root's busybox of Commands, /bin/sh ->
// gosh, the static agent as /init, ExtraBinaries with their libraries, and
// the kernel's module tree at /lib/modules/<ver>.
func (b *builder) uroot(ctx context.Context, kdir string, k kernelOut, out string) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	tool := filepath.Join(b.cacheDir, "bin", "u-root")
	if err := os.MkdirAll(filepath.Dir(tool), 0o755); err != nil {
		return err
	}
	t := time.Now()
	// Built each time the initramfs is: go's build cache makes that cheap,
	// and it follows go.mod's u-root version.
	toolTmp := filepath.Join(work, "u-root")
	b.steps.Note("building the u-root tool")
	if err := b.goCmd(ctx, nil, "build", "-o", toolTmp, urootPackage); err != nil {
		return fmt.Errorf("images: building the u-root tool: %w", err)
	}
	if err := os.Rename(toolTmp, tool); err != nil {
		return err
	}
	agent := filepath.Join(work, "init")
	b.steps.Note("building the guest agent")
	if err := b.goCmd(ctx, []string{"CGO_ENABLED=0"}, "build", "-trimpath", "-ldflags=-s -w", "-o", agent, "./images/agent"); err != nil {
		return fmt.Errorf("images: building the agent: %w", err)
	}
	b.log.Debug("built tools", "took", time.Since(t))

	args := []string{
		"-o", out,
		"-initcmd=", "-uinitcmd=", "-defaultsh=gosh",
		"-go-build-tags=" + urootBuildTags,
		"-files", agent + ":init",
		"-files", filepath.Join(kdir, k.ModulesDir) + ":lib/modules/" + k.KernelVersion,
	}
	for _, bin := range sortedKeys(ExtraBinaries) {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("images: %s is needed in the guest image: %w (run \"apt-get install %s\")", bin, err, ExtraBinaries[bin])
		}
		args = append(args, "-files", bin)
	}
	for _, c := range Commands {
		args = append(args, urootPackage+"/cmds/core/"+c)
	}
	b.steps.Note("u-root: %d commands, the agent, the kernel modules", len(Commands))
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = b.srcDir
	cmd.Env = append(os.Environ(), "GO111MODULE=on")
	o, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("images: u-root %s: %v\n%s", strings.Join(args, " "), err, tail(o, 4000))
	}
	b.log.Debug("u-root output", "output", string(o))
	return nil
}

func (b *builder) goCmd(ctx context.Context, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = b.srcDir
	cmd.Env = append(os.Environ(), env...)
	o, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("go %s: %w (the Go toolchain is needed to build the images)", args[0], err)
		}
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, tail(o, 4000))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
