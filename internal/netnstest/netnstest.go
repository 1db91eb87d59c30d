// Package netnstest keeps the networks tests build off the host's own: a
// test binary re-executes itself in a private network namespace (Main), so
// every thread, socket and interface of the test is in it, and helpers
// create further named namespaces and veth pairs there, removed at
// cleanup. Nothing touches the host's interfaces.
package netnstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// env marks the re-executed test binary.
const env = "HVNET_TEST_PRIVATE_NETNS"

// Main is a TestMain: as root, and not yet in the private namespace, it
// runs the test binary again in a fresh network namespace (CLONE_NEWNET)
// and exits with its status; otherwise it runs the tests.
func Main(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(env) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), env+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "re-exec in a new network namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Private reports whether the tests run in Main's private namespace.
func Private() bool { return os.Getenv(env) != "" }

// Need skips the test unless it runs as root in the private namespace.
func Need(t testing.TB) {
	t.Helper()
	if !Private() {
		t.Skip("needs root (runs in a private network namespace)")
	}
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TryRun runs a command and reports whether it succeeded.
func TryRun(args ...string) bool {
	return exec.Command(args[0], args[1:]...).Run() == nil
}

var seq atomic.Int64

// New creates a named namespace with lo up, deleted at cleanup. The name
// holds prefix, the process ID and a sequence number, so that tests
// running at once do not collide.
func New(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth creates a veth pair, both ends up: local in the test's namespace,
// peer in ns. It is deleted at cleanup.
func Veth(t testing.TB, local, ns, peer string) {
	t.Helper()
	Run(t, "ip", "link", "add", local, "type", "veth", "peer", "name", peer, "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", local).Run() })
	Run(t, "ip", "link", "set", local, "up")
	Run(t, "ip", "-n", ns, "link", "set", peer, "up")
}

// Exec runs a command in ns (ip netns exec) and fails the test if it
// fails.
func Exec(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// TryOutput runs a command and returns its combined output and error.
func TryOutput(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}
