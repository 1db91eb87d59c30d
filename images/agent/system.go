package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/images/agentcfg"
)

// mountProc mounts /proc, which the start line needs.
func mountProc() error {
	return mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// start prints the start line; the boot benchmark times it.
func start() {
	var u unix.Utsname
	_ = unix.Uname(&u)
	s := agentcfg.Start{Kernel: unix.ByteSliceToString(u.Release[:]), Uptime: uptime(), CPUs: runtime.NumCPU()}
	fmt.Fprintln(os.Stdout, s.String())
}

func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[0], 64)
	return u
}

// mountRest mounts the other file systems. Only cgroup2 may fail.
func mountRest() error {
	ms := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
	for _, m := range ms {
		if err := mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return err
		}
	}
	if err := mount("cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		logf("%v (continuing)", err)
	}
	// /dev/ptmx for the interactive shell's terminal programs.
	if _, err := os.Lstat("/dev/ptmx"); err != nil {
		_ = os.Symlink("pts/ptmx", "/dev/ptmx")
	}
	return nil
}

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", dst, err)
	}
	err := unix.Mount(src, dst, fstype, flags, data)
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", fstype, dst, err)
	}
	return nil
}

// finish prints the result line and ends the VM. It never returns: init
// must not exit.
func finish(status int, err error) {
	if status < 0 || status > 255 {
		status = agentcfg.StatusAgentError
	}
	r := agentcfg.Result{Status: status, Uptime: uptime()}
	if err != nil {
		r.Error = err.Error()
		logf("error: %v", err)
	}
	fmt.Fprintln(os.Stdout, r.String())
	// tcdrain: the line must leave the UART before the VM ends, or the
	// host never sees it.
	_ = unix.IoctlSetInt(1, unix.TCSBRK, 1)
	unix.Sync()
	exitVM(byte(status))
	for {
		time.Sleep(time.Hour)
	}
}

// debugExitPort is the I/O port whose writes end the VM: hvnet's VMM exits
// with the byte written; QEMU's isa-debug-exit (iobase=0xf4) with
// (byte<<1)|1.
const debugExitPort = 0xf4

func exitVM(status byte) {
	// ioperm is per thread: stay on the one that asked for it.
	runtime.LockOSThread()
	if err := writePort(debugExitPort, status); err != nil {
		logf("write to port %#x: %v; trying /dev/port", debugExitPort, err)
		if f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0); err == nil {
			if _, err := f.WriteAt([]byte{status}, debugExitPort); err != nil {
				logf("write to /dev/port: %v", err)
			}
			f.Close()
		}
	}
	// Still here: no debug-exit device. Power off, else reboot.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("power off: %v", err)
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		logf("reboot: %v", err)
	}
}
