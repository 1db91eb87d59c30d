package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// -h and --help exit 0 on every command and subcommand; "hvnet version"
// and "hvnet --version" print the version and the revision.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"run", "-h"}, {"images", "-h"}, {"lab", "-h"}, {"demo", "-h"},
		{"switch", "-h"}, {"up", "-h"}, {"bench", "-h"}, {"bench", "vhost", "-h"}, {"bench", "boot", "--help"},
		{"bench", "uplink", "-h"}, {"ctl", "-h"}, {"ctl", "ports", "-h"}, {"ctl", "fdb", "--help"}, {"version", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, nil, &out, &errb); code != 0 || out.Len()+errb.Len() == 0 {
			t.Errorf("hvnet %s: status %d, %d bytes of help; want 0 and the usage", strings.Join(args, " "), code, out.Len()+errb.Len())
		}
	}
	want := regexp.MustCompile(`^hvnet dev revision .+, go1\.\d+.* linux/\w+\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if code := run(args, nil, &out, &out); code != 0 || !want.MatchString(out.String()) {
			t.Errorf("hvnet %s: %d %q", args[0], code, out.String())
		}
	}
	old := revision
	revision = "0123456789ab+dirty"
	defer func() { revision = old }()
	if s := versionString(); !strings.Contains(s, "revision 0123456789ab+dirty,") {
		t.Errorf("versionString with a stamped revision = %q", s)
	}
	var out bytes.Buffer
	if code := run([]string{"version", "extra"}, nil, &out, &out); code != 2 {
		t.Errorf("version extra: status %d, want 2", code)
	}
}

// ctl's own flags may follow the command, and --json covers errors too.
func TestCtlFlagsAfterCommand(t *testing.T) {
	sw, sock := ctlDaemon(t)
	_ = sw
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "ports", "--socket", sock, "--json"}, nil, &out, &errb); code != 0 || !json.Valid(out.Bytes()) ||
		!strings.Contains(out.String(), `"name": "a"`) {
		t.Errorf("ctl ports --socket S --json: %d %q %q", code, out.String(), errb.String())
	}
	for _, tc := range []struct {
		args   []string
		code   int
		status int
		field  string
	}{
		{[]string{"port", "zz", "--json"}, 1, 404, "port"},
		{[]string{"--json", "set", "a", "mtu=10"}, 1, 400, "mtu"},
		{[]string{"bogus", "--json"}, 2, 0, ""},
	} {
		code, out, _ := runCtl(t, sock, tc.args...)
		var e struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
			Field  string `json:"field"`
		}
		if err := json.Unmarshal([]byte(out), &e); err != nil || code != tc.code || e.Error == "" || e.Status != tc.status || e.Field != tc.field {
			t.Errorf("ctl %q: status %d, %q (%v); want %d and a JSON error %d naming %q", tc.args, code, out, err, tc.code, tc.status, tc.field)
		}
	}
	if code, _, errs := runCtl(t, sock, "ports", "--socket"); code != 2 || !strings.Contains(errs, "--socket") {
		t.Errorf("ctl ports --socket (no value): %d %q", code, errs)
	}
}
