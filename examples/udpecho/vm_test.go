package udpecho_test

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"example.com/udpecho/echo"

	"github.com/hvnet/hvnet/lab"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vmtest"
	"github.com/hvnet/hvnet/vmtest/event"
	"github.com/hvnet/hvnet/vmtest/netns"
)

// image is what the guests get on top of hvnet's guest image: the echo
// server and the echo package's tests, built with coverage.
var image = vmtest.Image{
	Commands: []string{"./cmd/echod"}, // static linux/amd64 builds, in /bin
	Tests:    []string{"./echo"},      // go test -c, in /tests/echo.test
	Cover:    true,
}

// TestEchoAcrossVLANs boots three guests on one hvnet switch: the server
// and a client in VLAN 10, another client in VLAN 20 with an address in
// the same subnet. The VLAN 10 client must reach the server (the echo
// package's tests pass in it), the VLAN 20 one must not (its test expects
// silence, and the server must have served nobody at its address). A
// network namespace of the test's own, joined to the switch's VLAN 10 by
// an uplink, is a fourth host: the test itself pings the server from it
// once the server says it listens.
func TestEchoAcrossVLANs(t *testing.T) {
	if vmtest.Nest(t, vmtest.NestOptions{Images: []vmtest.Image{image}, Timeout: 10 * time.Minute}) {
		return // ran inside the nested test host, where this host's KVM cannot boot Linux
	}
	set := vmtest.BuildImage(t, image)

	// A host of the test's own on VLAN 10: a namespace behind a veth
	// whose other end is the switch's uplink port.
	client := netns.New(t, "client")
	netns.Veth(t, "echoup0", client, "eth0")
	client.Addr(t, "eth0", "10.0.0.9/24")
	attach, detach := lab.UplinkAttach("echoup0", vswitch.PortConfig{Name: "uplink", PVID: 10})
	defer detach()
	var waiter event.Waiter

	var mu sync.Mutex
	arrived := map[string]time.Time{} // "guest/type" → when the host saw it first
	onEvent := func(guest string, e event.Event) {
		waiter.Add(guest, e)
		mu.Lock()
		defer mu.Unlock()
		if _, ok := arrived[guest+"/"+e.Type]; !ok {
			arrived[guest+"/"+e.Type] = time.Now()
		}
	}
	guests := []lab.GuestConfig{
		{Name: "server", PVID: 10, Addr: netip.MustParsePrefix("10.0.0.1/24"),
			Script: "echod -addr :7 -for 60s\n"},
		{Name: "near", PVID: 10, Addr: netip.MustParsePrefix("10.0.0.2/24"),
			Script: "/init gotest -cover /tests/echo.test -server 10.0.0.1:7 -expect reply\n"},
		{Name: "far", PVID: 20, Addr: netip.MustParsePrefix("10.0.0.3/24"),
			// Wait until the near client has got its replies (then the
			// server listens) before trying: silence must mean isolation.
			Script: "sleep 15\n/init event probing\n/init gotest /tests/echo.test -test.run TestRemote -server 10.0.0.1:7 -expect silence\n"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// Once the server listens, the test's own host asks it too.
	fromNS := make(chan error, 1)
	go func() {
		if _, err := waiter.Wait(ctx, "server", "listening"); err != nil {
			fromNS <- err
			return
		}
		fromNS <- client.Do(func() error { // the socket is in the namespace
			var err error
			for i := 0; i < 10; i++ {
				if err = echo.Ping("10.0.0.1:7", []byte("from the test's namespace"), 2*time.Second); err == nil {
					break
				}
			}
			return err
		})
	}()
	res, err := lab.Run(ctx, lab.Config{
		Kernel: set.Kernel, Initrd: set.Initrd,
		Guests:  guests,
		Console: os.Stderr, Events: onEvent, Attach: attach,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-fromNS; err != nil {
		t.Errorf("the test's namespace on VLAN 10 could not reach the server: %v", err)
	}
	by := map[string]lab.Result{}
	for _, r := range res {
		by[r.Name] = r
		if r.Status != 0 || r.Err != nil {
			t.Errorf("guest %s: status %d, error %v", r.Name, r.Status, r.Err)
		}
		if r.BadEvents != 0 {
			t.Errorf("guest %s: %d malformed event lines", r.Name, r.BadEvents)
		}
	}
	// The echo package's tests, as run in each client, become subtests.
	cover := t.TempDir()
	near := vmtest.ReportGoTests(t, "near", by["near"].Events, cover)
	far := vmtest.ReportGoTests(t, "far", by["far"].Events, "")
	if near.Passed < 2 || near.Failed != 0 {
		t.Errorf("near: %d passed, %d failed; want TestLocal and TestRemote passing", near.Passed, near.Failed)
	}
	if far.Passed != 1 || far.Failed != 0 {
		t.Errorf("far: %d passed, %d failed; want TestRemote (silence) passing", far.Passed, far.Failed)
	}
	if p := near.Profiles["echo.test"]; len(p) < len("mode: set\n")+10 {
		t.Errorf("near sent no coverage profile (%d bytes)", len(p))
	}

	// Whom the server answered, from its own event.
	var served map[string]int
	for _, e := range by["server"].Events {
		if e.Type == "served" {
			if err := e.Decode(&served); err != nil {
				t.Fatal(err)
			}
		}
	}
	if served == nil {
		t.Fatal("the server sent no served event")
	}
	if served["10.0.0.2"] < 21 {
		t.Errorf("server answered 10.0.0.2 %d times, want at least 21 (TestRemote's pings)", served["10.0.0.2"])
	}
	if served["10.0.0.9"] == 0 {
		t.Errorf("server never answered the test's namespace (10.0.0.9): %v", served)
	}
	if n := served["10.0.0.3"]; n != 0 {
		t.Errorf("server answered 10.0.0.3 (VLAN 20) %d times: the VLANs leak", n)
	}
	// The far client's silence counts only if the server was listening
	// while it tried.
	mu.Lock()
	defer mu.Unlock()
	l, p, s := arrived["server/listening"], arrived["far/probing"], arrived["server/served"]
	if l.IsZero() || p.IsZero() || s.IsZero() || !l.Before(p) || !p.Before(s) {
		t.Errorf("the far client probed outside the server's life (listening %v, probing %v, served %v): its silence proves nothing",
			l.Format(time.StampMilli), p.Format(time.StampMilli), s.Format(time.StampMilli))
	}
	if far := arrived["far/"+event.TypeTest]; far.IsZero() || !far.Before(s) {
		t.Errorf("the far client's result came after the server stopped: its silence proves nothing")
	}
}
