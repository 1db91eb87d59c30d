package api

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	vswitch "github.com/hvnet/hvnet/switch"
)

func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		if m.Counter != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func scrape(t *testing.T, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	text, err := e.c.Metrics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return fams
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.send("a", mac(1), mac(2), 4)
	tagged := eth(mac(2), mac(3), 50)
	tagged = append(tagged[:12], append([]byte{0x81, 0, 0, 10}, tagged[12:]...)...)
	e.h["a"].Input([]vswitch.Frame{{Data: tagged}}) // tagged on an access port: VLAN drop
	fams := scrape(t, e)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hvnet_port_packets_total", map[string]string{"port": "a", "direction": "ingress"}, 5},
		{"hvnet_port_packets_total", map[string]string{"port": "b", "direction": "egress"}, 4},
		{"hvnet_port_bytes_total", map[string]string{"port": "b", "direction": "egress"}, 4 * 64},
		{"hvnet_port_drops_total", map[string]string{"port": "a", "direction": "ingress", "reason": "vlan"}, 1},
		{"hvnet_port_drops_total", map[string]string{"port": "a", "direction": "ingress", "reason": "policer"}, 0},
		{"hvnet_port_drops_total", map[string]string{"port": "t", "direction": "egress", "reason": "no_buffer"}, 0},
		{"hvnet_port_learned_macs", map[string]string{"port": "a"}, 1},
		{"hvnet_fdb_entries", nil, 1},
		{"hvnet_fdb_learned_total", nil, 1},
	} {
		if got := metricValue(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := len(fams["hvnet_port_drops_total"].GetMetric()); n != 3*int(vswitch.NumDropReasons) {
		t.Errorf("hvnet_port_drops_total has %d series, want 3 ports x every reason", n)
	}
}
