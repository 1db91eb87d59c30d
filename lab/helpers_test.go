package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hvnet/hvnet/images/agentcfg"
)

// tlog writes guest console lines to the test log. The guests' result
// lines are renamed: inside the nested test host this log is the host's
// console, whose own result line must be the only one with the prefix.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	s := strings.ReplaceAll(strings.TrimRight(string(p), "\n"), strings.TrimSpace(agentcfg.ResultPrefix), "guest-result")
	l.t.Log(s)
	return len(p), nil
}

// between returns the console lines between the marker lines BEGIN-tag
// and END-tag.
func between(console, tag string) (string, error) {
	var b strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		switch {
		case l == "BEGIN-"+tag:
			in = true
		case l == "END-"+tag:
			return b.String(), nil
		case in:
			b.WriteString(l + "\n")
		}
	}
	return "", fmt.Errorf("no BEGIN-%s ... END-%s in the console", tag, tag)
}

// iperfBPS parses iperf3 -J output: the receiver's bits per second.
func iperfBPS(out string) (float64, error) {
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, fmt.Errorf("iperf3 JSON: %w\n%s", err, out)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// hasBit reports whether a /sys/bus/virtio/devices/*/features string (bit 0
// first) has bit set.
func hasBit(features string, bit int) bool {
	return bit < len(features) && features[bit] == '1'
}

// iperfClient is a script fragment that retries iperf3 until the server
// listens, printing its JSON between markers.
func iperfClient(tag, server, args string) string {
	return fmt.Sprintf(`for i in $(seq 1 60); do
  if iperf3 -c %[2]s %[3]s -J > /tmp/%[1]s.json; then break; fi
  sleep 1
done
echo BEGIN-%[1]s
cat /tmp/%[1]s.json
echo END-%[1]s
`, tag, server, args)
}

// waitPing waits until addr answers.
func waitPing(addr string) string {
	return fmt.Sprintf(`for i in $(seq 1 60); do
  if ping -c 1 -w 1000 %s; then break; fi
done
`, addr)
}

// watchdog logs every goroutine's stack if the returned stop function is
// not called within d: a hung lab shows where it hangs, even inside the
// nested test host.
func watchdog(t *testing.T, d time.Duration) (stop func() bool) {
	return time.AfterFunc(d, func() {
		buf := make([]byte, 4<<20)
		n := runtime.Stack(buf, true)
		t.Logf("WATCHDOG: still running after %v; goroutines:\n%s", d, buf[:n])
	}).Stop
}
