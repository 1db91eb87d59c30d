package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hvnet/hvnet/images/agentcfg"
)

const shell = "/bin/sh"

// runScript runs hvnet.cmd or hvnet.cmdfile, or an interactive shell when
// neither is given, and returns its exit status.
func runScript(c agentcfg.Cmdline) (int, error) {
	var args []string
	interactive := false
	switch {
	case c.Script != "":
		f := "/tmp/hvnet-cmd.sh"
		if err := os.WriteFile(f, []byte(c.Script), 0o755); err != nil {
			return agentcfg.StatusAgentError, err
		}
		args = []string{shell, f}
	case c.ScriptFile != "":
		if _, err := os.Stat(c.ScriptFile); err != nil {
			return agentcfg.StatusAgentError, fmt.Errorf("%s: %w", agentcfg.ParamCmdFile, err)
		}
		args = []string{shell, c.ScriptFile}
	default:
		interactive = true
		args = []string{shell}
		logf("no %s: starting a shell; the VM powers off when it exits", agentcfg.ParamCmd)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "/tmp"
	cmd.Env = os.Environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A session of its own, so that a timeout kills the whole tree, and
	// for the interactive shell the console as controlling terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: interactive, Ctty: 0}
	if err := cmd.Start(); err != nil {
		return agentcfg.StatusAgentError, fmt.Errorf("start %s: %w", shell, err)
	}
	pid := cmd.Process.Pid
	var timedOut atomic.Bool
	if c.Timeout > 0 {
		t := time.AfterFunc(c.Timeout, func() {
			timedOut.Store(true)
			_ = unix.Kill(-pid, unix.SIGKILL)
		})
		defer t.Stop()
	}
	ws, err := reapUntil(pid)
	if err != nil {
		return agentcfg.StatusAgentError, err
	}
	if timedOut.Load() {
		return agentcfg.StatusTimeout, fmt.Errorf("script timed out after %v", c.Timeout)
	}
	switch {
	case ws.Exited():
		return ws.ExitStatus(), nil
	case ws.Signaled():
		return 128 + int(ws.Signal()), fmt.Errorf("script killed by %v", ws.Signal())
	}
	return agentcfg.StatusAgentError, fmt.Errorf("script ended with wait status %#x", uint32(ws))
}

// reapUntil waits for any child, as init must (orphans are reparented to
// it), until pid has ended, and returns pid's status. cmd.Wait is not used:
// it would race with this loop for pid's status.
func reapUntil(pid int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for script: %w", err)
		}
		if got == pid {
			return ws, nil
		}
	}
}
