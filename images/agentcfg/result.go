package agentcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Console line prefixes.
const (
	StartPrefix  = "HVNET-AGENT-START "
	ResultPrefix = "HVNET-RESULT "
)

// Start is the agent's first console line.
type Start struct {
	Kernel string  // uname -r
	Uptime float64 // seconds since boot, from /proc/uptime
	CPUs   int     // online CPUs
}

// String renders the whole line, without a newline.
func (s Start) String() string {
	return fmt.Sprintf("%skernel=%s uptime=%.2f cpus=%d", StartPrefix, s.Kernel, s.Uptime, s.CPUs)
}

// ParseStart parses a start line. Text before the prefix (console noise) and
// a trailing \r are ignored.
func ParseStart(line string) (Start, error) {
	i := strings.Index(line, StartPrefix)
	if i < 0 {
		return Start{}, fmt.Errorf("no %q in line", strings.TrimSpace(StartPrefix))
	}
	var s Start
	var haveUptime, haveCPUs bool
	for _, f := range strings.Fields(line[i+len(StartPrefix):]) {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "kernel":
			s.Kernel = v
		case "uptime":
			s.Uptime, err = strconv.ParseFloat(v, 64)
			haveUptime = true
		case "cpus":
			s.CPUs, err = strconv.Atoi(v)
			haveCPUs = true
		}
		if err != nil {
			return Start{}, fmt.Errorf("start line: bad %s: %w", k, err)
		}
	}
	if s.Kernel == "" || !haveUptime || !haveCPUs {
		return Start{}, errors.New("start line: want kernel=, uptime= and cpus=")
	}
	return s, nil
}

// Result is the agent's last console line.
type Result struct {
	Status int     // the script's exit status, 124 on timeout, 125 on agent failure
	Uptime float64 // seconds since boot when the script ended
	Error  string  // what went wrong, if the agent knows
}

type resultJSON struct {
	Status *int        `json:"status"`
	Uptime json.Number `json:"uptime"`
	Error  string      `json:"error,omitempty"`
}

// String renders the whole line, without a newline.
func (r Result) String() string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	st := r.Status
	// Encoding a struct of an int, a number and a string cannot fail.
	_ = e.Encode(resultJSON{Status: &st, Uptime: json.Number(strconv.FormatFloat(r.Uptime, 'f', 2, 64)), Error: r.Error})
	return ResultPrefix + strings.TrimSuffix(b.String(), "\n")
}

// ParseResult parses a result line. Text before the prefix (console noise)
// and a trailing \r are ignored.
func ParseResult(line string) (Result, error) {
	i := strings.Index(line, ResultPrefix)
	if i < 0 {
		return Result{}, fmt.Errorf("no %q in line", strings.TrimSpace(ResultPrefix))
	}
	var j resultJSON
	d := json.NewDecoder(strings.NewReader(strings.TrimSpace(line[i+len(ResultPrefix):])))
	if err := d.Decode(&j); err != nil {
		return Result{}, fmt.Errorf("result line: %w", err)
	}
	if j.Status == nil {
		return Result{}, errors.New("result line: no status")
	}
	if *j.Status < 0 || *j.Status > 255 {
		return Result{}, fmt.Errorf("result line: status %d out of 0-255", *j.Status)
	}
	r := Result{Status: *j.Status, Error: j.Error}
	if j.Uptime != "" {
		u, err := j.Uptime.Float64()
		if err != nil {
			return Result{}, fmt.Errorf("result line: bad uptime: %w", err)
		}
		r.Uptime = u
	}
	return r, nil
}
