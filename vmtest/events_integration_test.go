package vmtest_test

import (
	"testing"

	"github.com/hvnet/hvnet/images/agentcfg"
	"github.com/hvnet/hvnet/vmtest"
	"github.com/hvnet/hvnet/vmtest/event"
)

// TestGuestEvents boots a guest whose script sends events through the
// agent, and one that is refused: the host sees the agent's ready event,
// then the script's, in order, and nothing malformed.
func TestGuestEvents(t *testing.T) {
	if vmtest.Nest(t) {
		return
	}
	g := vmtest.RunGuest(t, vmtest.Guest{Agent: agentcfg.Cmdline{Script: `set -e
/init event hello '{"n":1}'
/init event plain
if /init event broken '{'; then exit 3; fi
`}})
	if g.Status != 0 || g.Err != nil {
		t.Fatalf("guest: status %d, error %v", g.Status, g.Err)
	}
	if g.BadEvents != 0 {
		t.Errorf("%d malformed event lines", g.BadEvents)
	}
	var types []string
	for _, e := range g.Events {
		types = append(types, e.Type)
	}
	if len(types) != 3 || types[0] != event.TypeReady || types[1] != "hello" || types[2] != "plain" {
		t.Fatalf("events %v; want ready, hello, plain", types)
	}
	var d struct{ N int }
	if err := g.Events[1].Decode(&d); err != nil || d.N != 1 {
		t.Errorf("hello's data %s: %+v, %v", g.Events[1].Data, d, err)
	}
}
