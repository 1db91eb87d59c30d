package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hvnet/hvnet/daemon"
)

// The systemd unit's command line is one hvnet takes, and systemd finds
// nothing wrong with the unit.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../contrib/systemd/hvnet.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec0 string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			exec0 = v
		}
	}
	args := strings.Fields(exec0)
	if len(args) < 2 || filepath.Base(args[0]) != "hvnet" {
		t.Fatalf("ExecStart=%q", exec0)
	}
	var out bytes.Buffer
	if code := run(append(args[1:], "-h"), nil, &out, &out); code != 0 {
		t.Errorf("ExecStart's flags: hvnet %s -h: status %d\n%s", strings.Join(args[1:], " "), code, out.String())
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("systemd-analyze is not installed: the unit's syntax is not checked")
		return
	}
	dir := t.TempDir()
	self, _ := os.Executable()
	u := filepath.Join(dir, "hvnet.service")
	os.WriteFile(u, bytes.ReplaceAll(unit, []byte(args[0]), []byte(self)), 0o644)
	if b, err := exec.Command("systemd-analyze", "verify", u).CombinedOutput(); err != nil || len(bytes.TrimSpace(b)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, b)
	}
}

// With $NOTIFY_SOCKET the daemon tells the service manager READY=1 once
// its sockets exist, RELOADING=1 and READY=1 around a SIGHUP, and
// STOPPING=1 at SIGTERM (what Type=notify needs).
func TestSdNotify(t *testing.T) {
	dir := t.TempDir()
	ns := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", ns)
	sock, vs := filepath.Join(dir, "api.sock"), filepath.Join(dir, "v.sock")
	d := startHvnet(t, nil, "switch", "--api", sock, "--port", "name=v,socket="+vs)
	next := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := ln.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("notification %q, %v; want %q\n%s", buf[:n], err, want, d.logs)
		}
	}
	next("READY=1")
	for _, p := range []string{sock, vs} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("READY=1 before %s exists: %v", p, err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	d.term(t)
	next("STOPPING=1")
}

// The bash completion offers every command and the kinds ctl add takes.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	complete := func(words ...string) []string {
		t.Helper()
		script := fmt.Sprintf("source ../../contrib/bash-completion/hvnet; COMP_WORDS=(%s); COMP_CWORD=%d; _hvnet; echo \"${COMPREPLY[@]}\"",
			strings.Join(words, " "), len(words)-1)
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	top := strings.Join(complete("hvnet", "''"), " ")
	for _, c := range commands() {
		if !strings.Contains(" "+top+" ", " "+c.name+" ") {
			t.Errorf("completion of hvnet lacks %q: %s", c.name, top)
		}
	}
	// Every ctl command of ctl -h is offered.
	ctlWords := " " + strings.Join(complete("hvnet", "ctl", "''"), " ") + " "
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)`).FindAllStringSubmatch(ctlUsage, -1) {
		if !strings.Contains(ctlWords, " "+m[1]+" ") {
			t.Errorf("hvnet ctl <TAB> lacks %q: %s", m[1], ctlWords)
		}
	}
	if got := strings.Join(complete("hvnet", "ctl", "evpn", "''"), " "); got != "routes neighbors" {
		t.Errorf("hvnet ctl evpn <TAB> = %q", got)
	}
	// ctl add offers every registered kind.
	got := complete("hvnet", "ctl", "add", "''")
	slices.Sort(got)
	if want := daemon.Kinds(); !slices.Equal(got, want) {
		t.Errorf("hvnet ctl add <TAB> = %q, want the kinds %q", got, want)
	}
	// ctl set offers exactly the keys it takes, every port's.
	var keys []string
	for _, o := range daemon.CommonOptions() {
		if o.Key != "name" {
			keys = append(keys, o.Key+"=")
		}
	}
	if got, want := strings.Join(complete("hvnet", "ctl", "set", "vm1", "''"), " "), strings.Join(keys, " "); got != want {
		t.Errorf("hvnet ctl set vm1 <TAB> = %q, want %q", got, want)
	}
	if got := strings.Join(complete("hvnet", "--log-level", "debug", "switch", "--ki"), " "); got != "--kinds" {
		t.Errorf("hvnet switch --ki<TAB> = %q", got)
	}
	// Every flag of switch and up is offered.
	for _, cmd := range []string{"switch", "up"} {
		var help bytes.Buffer
		run([]string{cmd, "-h"}, nil, &help, &help)
		offered := " " + strings.Join(complete("hvnet", cmd, "--"), " ") + " "
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(help.String(), -1) {
			if !strings.Contains(offered, " --"+m[1]+" ") {
				t.Errorf("hvnet %s --<TAB> lacks --%s", cmd, m[1])
			}
		}
	}
}
