package api

import (
	"encoding/json"
	"testing"
	"time"
)

// TestPatchRateLive: a rate set by PATCH polices the very next frames, on
// the switch's manual clock.
func TestPatchRateLive(t *testing.T) {
	e := newEnv(t)
	e.send("a", mac(1), mac(2), 50)
	if n := e.p["b"].count(); n != 50 {
		t.Fatalf("before PATCH b got %d frames, want 50", n)
	}
	if _, err := e.c.PatchPort(ctx(t), "a", PortPatch{Ingress: &RateLimit{RatePPS: 100, BurstPackets: 10}}); err != nil {
		t.Fatal(err)
	}
	e.send("a", mac(1), mac(2), 50) // a full bucket: 10 pass
	e.clock.Advance(100 * time.Millisecond)
	e.send("a", mac(1), mac(2), 50) // 100 ms at 100/s: 10 more
	if n := e.p["b"].count(); n != 70 {
		t.Fatalf("after PATCH b got %d frames, want 50+10+10", n)
	}
	p, err := e.c.Port(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Counters.Drops["policer"]; got != 80 {
		t.Fatalf("policer drops = %d, want 80", got)
	}
	if got := metricValue(t, scrape(t, e), "hvnet_port_drops_total", map[string]string{"port": "a", "reason": "policer"}); got != 80 {
		t.Fatalf("metric policer drops = %v, want 80", got)
	}
	// Lifting the limit lets everything through again.
	if _, err := e.c.PatchPort(ctx(t), "a", PortPatch{Ingress: &RateLimit{}}); err != nil {
		t.Fatal(err)
	}
	e.send("a", mac(1), mac(2), 50)
	if n := e.p["b"].count(); n != 120 {
		t.Fatalf("after lifting the limit b got %d frames, want 120", n)
	}
}

// Rates are bits per second: a number, or the command line's strings.
func TestBitRateJSON(t *testing.T) {
	var r RateLimit
	if err := json.Unmarshal([]byte(`{"rate_bps": "100M", "rate_pps": 10}`), &r); err != nil || r.RateBPS != 100e6 || r.RatePPS != 10 {
		t.Errorf("string rate: %+v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(`{"rate_bps": 1500000}`), &r); err != nil || r.RateBPS != 1.5e6 {
		t.Errorf("number rate: %+v, %v", r, err)
	}
	for _, bad := range []string{`{"rate_bps": "fast"}`, `{"rate_bps": "10MB"}`, `{"rate_bps": true}`} {
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	cfg, e := toRate("egress", RateLimit{RateBPS: 100e6, BurstBytes: 1500})
	if e != nil || cfg.Bytes.Rate != 12.5e6 || cfg.Bytes.Burst != 1500 || toAPIRate(cfg).RateBPS != 100e6 {
		t.Errorf("toRate = %+v, %v", cfg, e)
	}
}
