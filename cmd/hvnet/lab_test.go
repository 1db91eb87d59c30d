package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLabUsageErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "lab.conf")
	if err := os.WriteFile(conf, []byte("# lab\nname=a,ip=10.0.0.1/24\nname=b,colour=blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"lab"}, "no guests"},
		{[]string{"lab", "--guest", "ip=10.0.0.1/24"}, "no name="},
		{[]string{"lab", "--guest", "name=a,rate=fast"}, "rate"},
		{[]string{"lab", "--config", conf}, `lab.conf:3: colour=blue: unknown key "colour"`},
		{[]string{"lab", "--config", filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{[]string{"lab", "extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		if got := run(c.args, strings.NewReader(""), &stdout, &stderr); got != 2 {
			t.Errorf("hvnet %v = %d, want 2 (stderr %q)", c.args, got, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.wantErr) {
			t.Errorf("hvnet %v: stderr %q, want %q", c.args, stderr.String(), c.wantErr)
		}
	}
}
