package vmm_test

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/images/agentcfg"
	vswitch "github.com/hvnet/hvnet/switch"
	"github.com/hvnet/hvnet/vhost"
	"github.com/hvnet/hvnet/vmm"
	"github.com/hvnet/hvnet/vmtest"
)

// tlogWriter sends a guest's console to the test log, line by line.
type tlogWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
	all    strings.Builder
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Log(w.prefix + strings.TrimRight(line, "\r\n"))
	}
}

// TestVhostUserGuests boots two guests whose NICs are backed by hvnet's
// vhost-user backend (two server-mode ports on one in-process switch):
// they ping each other and run a short iperf3, and the switch ports count
// the frames.
func TestVhostUserGuests(t *testing.T) {
	if vmtest.Nest(t) {
		return
	}
	set := vmtest.Images(t)
	log := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn})
	sw := vswitch.New(vswitch.Config{Logger: log})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	swDone := make(chan struct{})
	go func() { defer close(swDone); sw.Run(ctx, time.Millisecond) }()
	defer func() { cancel(); <-swDone }()

	type guest struct {
		name, addr, script string
		port               *vhost.Port
		m                  *vmm.Machine
		con                *tlogWriter
	}
	guests := []*guest{
		{name: "srv", addr: "10.0.0.1/24", script: "iperf3 -s -1\n"},
		{name: "cli", addr: "10.0.0.2/24", script: "for i in $(seq 1 60); do\n  if ping -c 1 -w 1000 10.0.0.1; then break; fi\ndone\n" +
			"ping -c 3 10.0.0.1\niperf3 -c 10.0.0.1 -t 2\n"},
	}
	dir := t.TempDir()
	for i, g := range guests {
		sock := filepath.Join(dir, g.name+".sock")
		p, err := vhost.NewPort(sw, vhost.PortConfig{Port: vswitch.PortConfig{Name: g.name, PVID: 1}, Socket: sock, Logger: log.Named(g.name)})
		if err != nil {
			t.Fatal(err)
		}
		g.port = p
		runDone := make(chan error, 1)
		go func() { runDone <- p.Run(ctx) }()
		defer func() { cancel(); <-runDone; p.Remove() }()
		ac := agentcfg.Cmdline{Modules: []string{"@virtio-net"},
			Ifaces: []agentcfg.Iface{{Name: "eth0", Addr: netip.MustParsePrefix(g.addr)}}, Script: g.script}
		g.con = &tlogWriter{t: t, prefix: g.name + "| "}
		m, err := vmm.New(vmm.Config{Kernel: set.Kernel, Initrd: set.Initrd, MemMiB: 256, CPUs: 1, Console: g.con,
			Cmdline: vmtest.BaseCmdline + " " + ac.String(), Log: log.Named(g.name)})
		if err != nil {
			t.Fatal(err)
		}
		g.m = m
		defer m.Close()
		if _, err := m.AddVhostNet(sock, vmm.NetConfig{MAC: [6]byte{2, 0, 0, 0, 0, byte(i + 1)}}); err != nil {
			t.Fatalf("%s: AddNet: %v", g.name, err)
		}
	}
	var wg sync.WaitGroup
	status := make([]int, len(guests))
	errs := make([]error, len(guests))
	for i, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status[i], errs[i] = g.m.Run(ctx)
		}()
	}
	wg.Wait()
	for i, g := range guests {
		if status[i] != 0 || errs[i] != nil {
			t.Errorf("guest %s: status %d, error %v", g.name, status[i], errs[i])
		}
	}
	if !strings.Contains(guests[1].con.all.String(), "receiver") {
		t.Errorf("cli: no iperf3 summary")
	}
	for _, g := range guests {
		c := g.port.Handle().Counters()
		t.Logf("port %s: %+v", g.name, c)
		if c.RxPackets < 3 || c.TxPackets < 3 {
			t.Errorf("port %s counted rx %d tx %d frames, want ≥ 3 each way", g.name, c.RxPackets, c.TxPackets)
		}
	}
	for _, g := range guests {
		g.m.StopDevices()
	}
}
