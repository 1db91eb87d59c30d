package agentcfg

import (
	"strings"
	"testing"
)

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{Status: 0, Uptime: 1.5},
		{Status: 255, Uptime: 12345.67},
		{Status: StatusAgentError, Uptime: 0.01, Error: `interface eth0 did not appear <"quoted">` + "\nsecond line"},
	} {
		line := r.String()
		if strings.Contains(line, "\n") || !strings.HasPrefix(line, ResultPrefix+"{") {
			t.Errorf("String() = %q, want one line starting with %q", line, ResultPrefix)
		}
		got, err := ParseResult("\x1b[2J[   3.1] noise " + line + "\r")
		if err != nil {
			t.Errorf("ParseResult(%q) = %v", line, err)
			continue
		}
		if got != r {
			t.Errorf("ParseResult(%q) = %+v, want %+v", line, got, r)
		}
	}
}

func TestResultFormat(t *testing.T) {
	if got, want := (Result{Status: 3, Uptime: 1.856}).String(), `HVNET-RESULT {"status":3,"uptime":1.86}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got, want := (Result{Status: 125, Uptime: 2, Error: "a<b"}).String(), `HVNET-RESULT {"status":125,"uptime":2.00,"error":"a<b"}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestParseResultErrors(t *testing.T) {
	for _, tt := range []struct{ line, wantErr string }{
		{"hello", "no \"HVNET-RESULT\""},
		{"HVNET-RESULT ", "result line"},
		{`HVNET-RESULT {"status":3`, "result line"},
		{`HVNET-RESULT {"uptime":1}`, "no status"},
		{`HVNET-RESULT {"status":256}`, "out of 0-255"},
		{`HVNET-RESULT {"status":-1}`, "out of 0-255"},
		{`HVNET-RESULT {"status":"3"}`, "result line"},
		{`HVNET-RESULT {"status":3,"uptime":"x"}`, "result line"},
	} {
		if _, err := ParseResult(tt.line); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseResult(%q) = %v, want an error containing %q", tt.line, err, tt.wantErr)
		}
	}
}

func TestStartRoundTrip(t *testing.T) {
	s := Start{Kernel: "6.1.0-48-cloud-amd64", Uptime: 1.47, CPUs: 2}
	line := s.String()
	if want := "HVNET-AGENT-START kernel=6.1.0-48-cloud-amd64 uptime=1.47 cpus=2"; line != want {
		t.Errorf("String() = %q, want %q", line, want)
	}
	got, err := ParseStart("junk" + line + "\r\n")
	if err != nil || got != s {
		t.Errorf("ParseStart(%q) = %+v, %v, want %+v", line, got, err, s)
	}
	for _, bad := range []string{"nothing", "HVNET-AGENT-START kernel=x", "HVNET-AGENT-START kernel=x uptime=a cpus=1"} {
		if _, err := ParseStart(bad); err == nil {
			t.Errorf("ParseStart(%q) = nil error, want one", bad)
		}
	}
}
