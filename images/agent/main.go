// Command agent is /init of hvnet's test guests and of the nested test host.
//
// It mounts the usual file systems, prints a start line on the console,
// loads modules, configures interfaces and runs a shell script, all as the
// hvnet.* kernel parameters say (see hvnet/images/agentcfg), then prints a
// result line and ends the VM with the script's exit status: it writes the
// status to I/O port 0xf4 (hvnet's VMM and QEMU's isa-debug-exit stop
// there), and powers off if that did not stop the machine.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/hvnet/hvnet/images/agentcfg"
)

// path is $PATH in the guest: u-root's busybox links are in /bbin.
const path = "/bbin:/bin:/usr/bin:/sbin:/usr/sbin"

func main() {
	if os.Getpid() != 1 && len(os.Args) > 1 {
		switch os.Args[1] { // run from a guest script
		case "hostile":
			os.Exit(hostileMain(os.Args[2:])) // hostile.go
		case "event":
			os.Exit(eventMain(os.Args[2:])) // events.go
		case "gotest":
			os.Exit(gotestMain(os.Args[2:]))
		}
	}
	status, err := run()
	finish(status, err)
}

// run does the agent's work and returns the exit status to report.
func run() (status int, err error) {
	defer func() {
		if r := recover(); r != nil {
			status, err = agentcfg.StatusAgentError, fmt.Errorf("agent panic: %v\n%s", r, debug.Stack())
		}
	}()
	mountErr := mountProc()
	start()
	if mountErr != nil {
		return agentcfg.StatusAgentError, mountErr
	}
	if err := mountRest(); err != nil {
		return agentcfg.StatusAgentError, err
	}
	os.Setenv("PATH", path)
	os.Setenv("HOME", "/tmp")
	os.Setenv("TERM", "linux")

	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return agentcfg.StatusAgentError, err
	}
	c, err := agentcfg.Parse(string(raw))
	if err != nil {
		return agentcfg.StatusAgentError, fmt.Errorf("kernel command line: %w", err)
	}
	if err := setupLoopback(); err != nil {
		return agentcfg.StatusAgentError, err
	}
	mods, err := agentcfg.ExpandModules(c.Modules)
	if err != nil {
		return agentcfg.StatusAgentError, err
	}
	if err := loadModules(mods); err != nil {
		return agentcfg.StatusAgentError, err
	}
	for _, i := range c.Ifaces {
		if err := configure(i, 10*time.Second); err != nil {
			return agentcfg.StatusAgentError, err
		}
	}
	ready()
	return runScript(c)
}

// logf prints an agent message on the console.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "hvnet-agent: "+format+"\n", args...)
}
