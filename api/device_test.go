package api

import (
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// deviceFactory is a fakeFactory that also reports device counters.
type deviceFactory struct {
	*fakeFactory
	mu  sync.Mutex
	dev map[string]*DeviceCounters
}

func (f *deviceFactory) DeviceCounters(name string) *DeviceCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dev[name]
}

var _ DeviceReporter = (*deviceFactory)(nil)

// deviceEnv is newEnv whose factory reports a vhost-user port "a" (a
// frontend that sent bad headers, shrank its memory, handed over a pipe
// and a file on disk as memory) and an uplink "t"; "b" keeps no device
// counters.
func deviceEnv(t *testing.T) *env {
	return newEnvWith(t, func(o *Options) {
		o.Ports = &deviceFactory{fakeFactory: o.Ports.(*fakeFactory), dev: map[string]*DeviceCounters{
			"a": {Kind: KindVhostUser,
				VirtioCounters: &VirtioCounters{TxDropBadHeader: 3, TxDropRunt: 1, MemoryFaults: 1, Faults: 2},
				VhostCounters:  &VhostCounters{Sessions: 4, Connected: true, RefusedFDs: 2, RefusedMemFDs: 1, RejectedRequests: 3, KickHangups: 1, Stuck: 2}},
			"t": {Kind: KindUplink, UplinkCounters: &UplinkCounters{RxDropKernel: 7, TxErrors: 5, Attaches: 2}},
		}}
	})
}

// jsonFields lists the JSON names of t's fields, embedded structs'
// included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type.Elem())...)
			continue
		}
		out = append(out, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// GET shows a port's device counters as one flat "device" object with
// its kind's fields only, zeros included; a port whose backend keeps none
// has no "device".
func TestPortDeviceCounters(t *testing.T) {
	e := deviceEnv(t)
	raw, err := e.c.Raw(ctx(t), http.MethodGet, "/v1/ports/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Device map[string]any `json:"device"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	want := []string{"kind"}
	for _, f := range append(jsonFields(reflect.TypeFor[VirtioCounters]()), jsonFields(reflect.TypeFor[VhostCounters]())...) {
		if f != "features" && f != "active_pairs" { // a live session's state: absent without one
			want = append(want, f)
		}
	}
	sort.Strings(want)
	if got := keys(p.Device); !reflect.DeepEqual(got, want) {
		t.Fatalf("port a's device fields = %v, want %v\n%s", got, want, raw)
	}
	for k, v := range map[string]any{"kind": "vhost-user", "tx_drop_bad_header": 3.0, "tx_drop_runt": 1.0, "memory_faults": 1.0,
		"faults": 2.0, "refused_fds": 2.0, "kick_hangups": 1.0, "notify_stalls": 0.0, "sessions": 4.0, "connected": true,
		"refused_mem_fds": 1.0, "refused_mappings": 0.0, "rejected_requests": 3.0} {
		if p.Device[k] != v {
			t.Errorf("device.%s = %v, want %v", k, p.Device[k], v)
		}
	}

	ps, err := e.c.Ports(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*DeviceCounters{}
	for _, p := range ps {
		got[p.Name] = p.Device
	}
	f := e.srv.ports.(*deviceFactory)
	for _, name := range []string{"a", "b", "t"} {
		if !reflect.DeepEqual(got[name], f.dev[name]) {
			t.Errorf("GET /v1/ports: %s's device = %+v, want %+v", name, got[name], f.dev[name])
		}
	}
	raw, err = e.c.Raw(ctx(t), http.MethodGet, "/v1/ports/b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"device"`) {
		t.Errorf("port b (no device counters) answers %s", raw)
	}
}

// /metrics exports each port's device counters: drops by reason, faults
// by kind, a vhost-user port's sessions and state.
func TestMetricsDeviceCounters(t *testing.T) {
	e := deviceEnv(t)
	fams := scrape(t, e)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hvnet_port_device_drops_total", map[string]string{"port": "a", "reason": "tx_bad_header"}, 3},
		{"hvnet_port_device_drops_total", map[string]string{"port": "a", "reason": "tx_runt"}, 1},
		{"hvnet_port_device_drops_total", map[string]string{"port": "a", "reason": "rx_no_buffer"}, 0},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "memory"}, 1},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "queue"}, 2},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "refused_fd"}, 2},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "kick_hangup"}, 1},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "notify_stall"}, 0},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "refused_mem_fd"}, 1},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "refused_mapping"}, 0},
		{"hvnet_port_device_faults_total", map[string]string{"port": "a", "kind": "rejected_request"}, 3},
		{"hvnet_port_vhost_sessions_total", map[string]string{"port": "a"}, 4},
		{"hvnet_port_vhost_connected", map[string]string{"port": "a"}, 1},
		{"hvnet_port_vhost_stuck", map[string]string{"port": "a"}, 2},
		{"hvnet_port_device_drops_total", map[string]string{"port": "t", "reason": "rx_kernel"}, 7},
		{"hvnet_port_device_drops_total", map[string]string{"port": "t", "reason": "tx_error"}, 5},
		{"hvnet_port_device_faults_total", map[string]string{"port": "t", "kind": "rx_socket_error"}, 0},
	} {
		if got := metricValue(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	series := map[string]int{}
	for _, name := range []string{"hvnet_port_device_drops_total", "hvnet_port_device_faults_total", "hvnet_port_vhost_sessions_total", "hvnet_port_vhost_stuck"} {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "port" {
					series[name+" "+l.GetValue()]++
				}
			}
		}
	}
	for k, want := range map[string]int{
		"hvnet_port_device_drops_total a": 9, "hvnet_port_device_faults_total a": 14, // virtio 4 + vhost-user 10
		"hvnet_port_device_drops_total t": 3, "hvnet_port_device_faults_total t": 1,
		"hvnet_port_vhost_sessions_total a": 1, "hvnet_port_vhost_stuck a": 1,
		"hvnet_port_device_drops_total b": 0, "hvnet_port_vhost_sessions_total t": 0,
	} {
		if series[k] != want {
			t.Errorf("%s: %d series, want %d", k, series[k], want)
		}
	}
}

// A factory that keeps no device counters: no "device", no device metrics.
func TestNoDeviceCounters(t *testing.T) {
	e := newEnv(t)
	raw, err := e.c.Raw(ctx(t), http.MethodGet, "/v1/ports", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"device"`) {
		t.Errorf("ports without device counters answer %s", raw)
	}
	fams := scrape(t, e)
	for name := range fams {
		if strings.HasPrefix(name, "hvnet_port_device_") || strings.HasPrefix(name, "hvnet_port_vhost_") {
			t.Errorf("metric family %s without device counters", name)
		}
	}
}

// Every counter field of DeviceCounters is a drop or a fault in Counts
// (so /metrics and hvnet ctl port show it), and openapi.yaml documents
// every field and no other.
func TestDeviceCountersDocumented(t *testing.T) {
	all := DeviceCounters{Kind: KindVhostUser, VirtioCounters: &VirtioCounters{}, VMMCounters: &VMMCounters{}, VhostCounters: &VhostCounters{}, UplinkCounters: &UplinkCounters{}, VXLANCounters: &VXLANCounters{}, BondCounters: &BondCounters{}}
	counted := map[string]bool{}
	labels := map[string]bool{}
	for _, c := range all.Counts() {
		if (c.Drop == "") == (c.Fault == "") {
			t.Errorf("count %s: drop %q, fault %q: want exactly one", c.Field, c.Drop, c.Fault)
		}
		l := "drop " + c.Drop + " fault " + c.Fault
		if labels[l] || counted[c.Field] {
			t.Errorf("count %s (%s) twice", c.Field, l)
		}
		counted[c.Field], labels[l] = true, true
	}
	fields := jsonFields(reflect.TypeFor[DeviceCounters]())
	for _, f := range fields {
		switch f {
		case "kind", "sessions", "connected", "stuck", "attaches", "features", "active_pairs", // not counters of drops or faults
			"vxlan_rx_packets", "vxlan_tx_packets", "vxlan_flood_copies", "vxlan_remote_macs",
			"vxlan_tx_gso_packets", "vxlan_tx_gso_fallbacks", "vxlan_rx_gro_packets", "vxlan_tx_direct",
			"vxlan_arp_suppressed", "vxlan_nd_suppressed", "vxlan_suppress_replies", "vxlan_local_ips", "vxlan_remote_ips",
			"bond_lacp_rx", "bond_lacp_tx", "bond_failovers", "bond_announced", "bond_rebalanced":
		default:
			if !counted[f] {
				t.Errorf("field %s is not in DeviceCounters.Counts", f)
			}
		}
	}

	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	sort.Strings(fields)
	if got := keys(doc.Components.Schemas["DeviceCounters"].Properties); !reflect.DeepEqual(got, fields) {
		t.Errorf("openapi.yaml DeviceCounters documents %v, want %v", got, fields)
	}
	if _, ok := doc.Components.Schemas["Port"].Properties["device"]; !ok {
		t.Errorf("openapi.yaml Port has no device")
	}
	metricsDoc := strings.NewReplacer("\n", " ", "{", " ", "}", " ", "=", " ", "(", " ").Replace(metricsDescription(doc.Paths["/metrics"]))
	documented := map[string]bool{}
	for _, w := range strings.Fields(metricsDoc) {
		for _, l := range strings.Split(w, "|") {
			documented[strings.Trim(l, ",;.")] = true
		}
	}
	for _, c := range all.Counts() {
		if !documented[c.Drop+c.Fault] {
			t.Errorf("openapi.yaml's /metrics does not name %q", c.Drop+c.Fault)
		}
	}
}

// metricsDescription is GET /metrics' description in openapi.yaml.
func metricsDescription(path map[string]any) string {
	get, _ := path["get"].(map[string]any)
	d, _ := get["description"].(string)
	return d
}
