package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// hiddenFlags are flags the README leaves out on purpose: the nested
// re-execution's own.
var hiddenFlags = map[string][]string{"demo": {"pcap-console"}}

// readmeUsage returns the README's usage text for a command: the lines of
// its code blocks that start it (and their indented continuations).
func readmeUsage(t *testing.T, readme []string, cmd string) string {
	t.Helper()
	var b strings.Builder
	in := false
	for _, l := range readme {
		switch {
		case strings.HasPrefix(l, "  "+cmd+" ") && !strings.HasPrefix(cmd, "hvnet "),
			strings.HasPrefix(l, cmd+" ["):
			in = true
		case in && strings.HasPrefix(l, strings.Repeat(" ", 9)):
		default:
			in = false
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatalf("README.md has no usage for %q", cmd)
	}
	return b.String()
}

var flagRE = regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)
var readmeFlagRE = regexp.MustCompile(`(?:^|[\s\[(|])--?([a-z][a-z0-9-]*)`)

// The README's usage of each command names exactly the flags the command
// has (its -h output), so the README cannot fall behind the CLI.
func TestReadmeFlags(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Split(string(raw), "\n")
	for _, c := range []struct {
		args   []string // the command, as run takes it
		readme string   // how its usage starts in the README
	}{
		{[]string{"run"}, "run"},
		{[]string{"lab"}, "lab"},
		{[]string{"demo"}, "demo"},
		{[]string{"images"}, "images"},
		{[]string{"bench", "boot"}, "bench"},
		{[]string{"switch"}, "hvnet switch"},
		{[]string{"up"}, "hvnet up"},
		{[]string{"ctl"}, "hvnet ctl"},
	} {
		var out, errb bytes.Buffer
		run(append(c.args, "-h"), strings.NewReader(""), &out, &errb)
		var have []string
		for _, m := range flagRE.FindAllStringSubmatch(out.String()+errb.String(), -1) {
			if !slices.Contains(hiddenFlags[c.args[0]], m[1]) {
				have = append(have, m[1])
			}
		}
		if len(have) == 0 {
			t.Errorf("%v -h lists no flags:\n%s%s", c.args, out.String(), errb.String())
			continue
		}
		var documented []string
		for _, m := range readmeFlagRE.FindAllStringSubmatch(readmeUsage(t, readme, c.readme), -1) {
			documented = append(documented, m[1])
		}
		for _, f := range have {
			if !slices.Contains(documented, f) {
				t.Errorf("hvnet %s has --%s; the README's usage does not show it", strings.Join(c.args, " "), f)
			}
		}
		for _, f := range documented {
			if f != "log-level" && f != "log-json" && !slices.Contains(have, f) {
				t.Errorf("the README's usage of hvnet %s shows --%s; the command has no such flag", strings.Join(c.args, " "), f)
			}
		}
	}
}
