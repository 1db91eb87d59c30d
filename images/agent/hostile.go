package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/songgao/packets/ethernet"
	"github.com/vishvananda/netlink"

	"github.com/hvnet/hvnet/images/agentcfg"
)

// The hostile driver: `/init hostile [flags]`, run from a guest script as
// root, takes the guest's virtio-net function from the kernel and drives
// it from user space as a malicious driver would: descriptor loops, out of
// range indices, buffers outside guest RAM, device-writable buffers on the
// transmit queue, bad indirect tables, avail-index jumps, and frames
// rewritten from the other vCPU while the device reads them (tags, the
// EtherType, header flags and GSO fields: raceRound). It checks that
// each ring fault puts the device into DEVICE_NEEDS_RESET (virtio 1.2
// §2.1.2) and that each bad chain is returned used without harm, resets
// the device and starts over until its time is up, then (with -rebind)
// gives the function back to the kernel driver. It prints a line per case
// in the first round, a line per round, and finally
//
//	HOSTILE-RESULT {json}
//
// It exits 0 if every fault case ended in NEEDS_RESET, no bad chain did,
// and the device worked for well-formed frames after every reset.
//
// With -phases 3 (benchmarks) wall-clock windows cycle through three
// phases: 0 quiet (device reset, driver asleep), 1 hostile, 2 benign: the
// same rounds, resets and notifications with well-formed chains only, the
// control that tells what hostile input costs a neighbour beyond the
// driver's own CPU time.

// HostileResult is the JSON of the HOSTILE-RESULT line.
type HostileResult struct {
	Device     string         `json:"device"`
	Rounds     int            `json:"rounds"`
	NeedsReset int            `json:"needs_reset"`           // fault cases that ended in DEVICE_NEEDS_RESET
	Missed     map[string]int `json:"missed,omitempty"`      // fault cases that did not
	BadChains  int            `json:"bad_chains"`            // bad chains the device returned used
	Unexpected int            `json:"unexpected"`            // batches of bad chains that broke the device or were not returned
	Good       int            `json:"good"`                  // well-formed frames the device consumed
	Raced      int            `json:"raced"`                 // frames rewritten by a second thread while the device read them
	Benign     int            `json:"benign,omitempty"`      // benign rounds (-phases 3)
	BenignGood int            `json:"benign_good,omitempty"` // well-formed frames the device consumed in them
	Rebound    string         `json:"rebound,omitempty"`     // interface after -rebind
	Error      string         `json:"error,omitempty"`
}

// common configuration registers (struct virtio_pci_common_cfg, §4.1.4.3).
const (
	ccDriverFeatureSel = 0x08
	ccDriverFeature    = 0x0c
	ccStatus           = 0x14
	ccQueueSel         = 0x16
	ccQueueSize        = 0x18
	ccQueueEnable      = 0x1c
	ccQueueNotifyOff   = 0x1e
	ccQueueDesc        = 0x20
	ccQueueDriver      = 0x28
	ccQueueDevice      = 0x30
)

// Device status bits (§2.1) and feature bits (§6).
const (
	stAcknowledge = 1
	stDriver      = 2
	stDriverOK    = 4
	stFeaturesOK  = 8
	stNeedsReset  = 0x40
	featIndirect  = 28
	featVersion1  = 32
)

// Split virtqueue layout (§2.7.5, §2.7.6, §2.7.8).
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4
	availNoIRQ   = 1
	hostileQSize = 16 // every ring fits in one page
	txQueue      = 1  // virtio-net: queue 1 is transmitq1 (§5.1.2)
	netHdrLen    = 12 // struct virtio_net_hdr with VERSION_1 (§5.1.6)

	pgDesc     = 0 // DMA page of the descriptor table
	pgAvail    = 1
	pgUsed     = 2
	pgIndirect = 3
	pgBuf      = 4 // first buffer page
	dmaPages   = 12
)

type hostile struct {
	pci      *pciFunc
	bar      *bar
	mem      *dma
	common   int // BAR offsets
	notify   int
	device   int
	notifyAt int // this session's TX notify address
	availIdx uint16
	ramEnd   uint64
	caseWait time.Duration
	window   time.Duration // attack in odd windows only (0: always)
	phases   int64         // with window: 2 (quiet, hostile) or 3 (quiet, hostile, benign)
	pace     time.Duration // pause between rounds
	verbose  bool
	res      HostileResult
}

func hostileMain(args []string) int {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	dur := fs.Duration("d", 10*time.Second, "keep attacking this long")
	wait := fs.Duration("wait", 5*time.Second, "how long a case may take to show its effect")
	rebind := fs.Bool("rebind", false, "give the device back to the kernel driver at the end")
	addr := fs.String("addr", "", "with -rebind: address (CIDR) for the interface")
	pace := fs.Duration("pace", 0, "pause this long between rounds")
	window := fs.Duration("window", 0, "attack only in odd windows of this length of wall-clock time (benchmarks)")
	phases := fs.Int64("phases", 2, "with -window: windows cycle through 2 phases (quiet, hostile) or 3 (quiet, hostile, benign)")
	waitOnly := fs.Bool("waitwindow", false, "with -window: just wait until an eighth into the next window, print its phase (0 quiet, 1 hostile, 2 benign) and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *phases != 2 && *phases != 3 {
		fmt.Fprintf(os.Stderr, "hostile: -phases %d: want 2 or 3\n", *phases)
		return 2
	}
	// Only ever inside an hvnet test guest: run anywhere else, this would
	// take the machine's own network card from its driver.
	if err := inTestGuest(); err != nil {
		fmt.Fprintf(os.Stderr, "hostile: refusing to run: %v\n", err)
		return 2
	}
	if *waitOnly {
		if *window <= 0 {
			fmt.Fprintln(os.Stderr, "hostile: -waitwindow needs -window")
			return 2
		}
		k := windowOf(time.Now(), *window) + 1
		time.Sleep(time.Until(windowStart(k, *window).Add(*window / 8)))
		fmt.Println(phaseOf(k, *phases))
		return 0
	}
	h := &hostile{caseWait: *wait, verbose: true, window: *window, phases: *phases, pace: *pace, res: HostileResult{Missed: map[string]int{}}}
	err := h.run(*dur, *rebind, *addr)
	if err != nil {
		h.res.Error = err.Error()
	}
	j, _ := json.Marshal(h.res)
	fmt.Printf("HOSTILE-RESULT %s\n", j)
	if err != nil || h.res.NeedsReset == 0 || len(h.res.Missed) != 0 || h.res.Unexpected != 0 || h.res.Good != h.res.Rounds {
		return 1
	}
	return 0
}

// inTestGuest checks that the kernel was booted by hvnet's lab for this
// agent (its command line has the agent's script parameter).
func inTestGuest() error {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, agentcfg.ParamCmd+"=") || strings.HasPrefix(f, agentcfg.ParamCmdFile+"=") {
			return nil
		}
	}
	return fmt.Errorf("not an hvnet test guest (no %s in /proc/cmdline)", agentcfg.ParamCmd)
}

func (h *hostile) run(dur time.Duration, rebind bool, addr string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hostile driver panic: %v", r)
		}
	}()
	a, err := findVirtioNet()
	if err != nil {
		return err
	}
	h.res.Device = a
	if h.ramEnd, err = ramEnd(); err != nil {
		return err
	}
	if h.pci, err = takePCI(a); err != nil {
		return err
	}
	common := h.pci.caps[virtioCapCommon]
	if h.bar, err = mapBAR(fmt.Sprintf("%s/%s/resource%d", sysPCI, a, common.bar)); err != nil {
		return err
	}
	defer h.bar.unmap()
	h.common, h.notify, h.device = int(common.offset), int(h.pci.caps[virtioCapNotify].offset), int(h.pci.caps[virtioCapDevice].offset)
	if h.mem, err = allocDMA(dmaPages); err != nil {
		return err
	}
	fmt.Printf("hostile: %s BAR%d common %#x notify %#x (x%d) RAM end %#x rings at %#x\n",
		a, common.bar, h.common, h.notify, h.pci.caps[virtioCapNotify].multiply, h.ramEnd, h.mem.gpa(0))
	deadline := time.Now().Add(dur)
	for h.res.Rounds == 0 || time.Now().Before(deadline) {
		if err := h.idle(deadline); err != nil {
			return err
		}
		if h.phase() == phaseBenign {
			if err := h.benignRound(); err != nil {
				return err
			}
			h.res.Benign++
			time.Sleep(h.pace)
			continue
		}
		if err := h.round(); err != nil {
			return err
		}
		h.res.Rounds++
		if h.verbose || h.res.Rounds%10 == 0 {
			fmt.Printf("hostile: round %d: needs_reset %d missed %v bad_chains %d good %d\n",
				h.res.Rounds, h.res.NeedsReset, h.res.Missed, h.res.BadChains, h.res.Good)
		}
		h.verbose = false
		time.Sleep(h.pace)
	}
	if err := h.reset(); err != nil {
		return err
	}
	if !rebind {
		return nil
	}
	name, err := h.pci.rebind(10 * time.Second)
	if err != nil {
		return err
	}
	h.res.Rebound = name
	if addr == "" {
		return nil
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if name != "eth0" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, "eth0"); err != nil {
			return fmt.Errorf("rename %s to eth0: %w", name, err)
		}
	}
	return configure(agentcfg.Iface{Name: "eth0", Addr: p}, 10*time.Second)
}

// Wall-clock windows: guests share the host's time (to the RTC's second)
// and so agree on them without talking.
func windowOf(t time.Time, w time.Duration) int64 { return t.UnixNano() / int64(w) }

func windowStart(k int64, w time.Duration) time.Time { return time.Unix(0, k*int64(w)) }

// The phases of -window.
const (
	phaseQuiet   = 0
	phaseHostile = 1
	phaseBenign  = 2
)

// phase is the current window's phase (hostile without -window).
func (h *hostile) phase() int64 {
	if h.window <= 0 {
		return phaseHostile
	}
	return phaseOf(windowOf(time.Now(), h.window), h.phases)
}

// phaseOf is window k's phase: a hash of k, not k mod phases, so that a
// measuring guest whose runs take about a multiple of phases windows
// (a slow test bed) does not land in the same phase run after run. Both
// sides compute it from the wall clock alone.
func phaseOf(k, phases int64) int64 {
	x := uint64(k) + 0x9e3779b97f4a7c15 // splitmix64
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return int64(x % uint64(phases))
}

// idle waits, with the device reset, while the current window is a quiet
// one (with -window), or until the deadline.
func (h *hostile) idle(deadline time.Time) error {
	if h.phase() != phaseQuiet {
		return nil
	}
	if err := h.reset(); err != nil {
		return err
	}
	next := windowStart(windowOf(time.Now(), h.window)+1, h.window)
	if next.After(deadline) {
		next = deadline
	}
	fmt.Printf("hostile: quiet window %d, idle until %s (after %d rounds)\n",
		windowOf(time.Now(), h.window), next.Format("15:04:05.000"), h.res.Rounds)
	time.Sleep(time.Until(next))
	return nil
}

// faultCases are malformed rings: each must end in DEVICE_NEEDS_RESET.
var faultCases = []struct {
	name string
	make func(h *hostile)
}{
	{"desc-loop", func(h *hostile) { // 0 -> 1 -> 0 (§2.7.5.3.1: no loops)
		h.desc(0, h.bufGPA(0), 72, descNext, 1)
		h.desc(1, h.bufGPA(0), 72, descNext, 0)
		h.avail(0)
	}},
	{"next-out-of-range", func(h *hostile) {
		h.desc(0, h.bufGPA(0), 72, descNext, 200)
		h.avail(0)
	}},
	{"head-out-of-range", func(h *hostile) { h.avail(999) }},
	{"indirect-bad-len", func(h *hostile) { // not a multiple of 16 (§2.7.5.3.1)
		h.desc(0, h.mem.gpa(pgIndirect*pageSize), 17, descIndirect, 0)
		h.avail(0)
	}},
	{"indirect-nested", func(h *hostile) {
		h.indirect(0, h.mem.gpa(pgIndirect*pageSize), 16, descIndirect, 0)
		h.desc(0, h.mem.gpa(pgIndirect*pageSize), 16, descIndirect, 0)
		h.avail(0)
	}},
	{"indirect-with-next", func(h *hostile) {
		h.indirect(0, h.bufGPA(0), 72, 0, 0)
		h.desc(0, h.mem.gpa(pgIndirect*pageSize), 16, descIndirect|descNext, 1)
		h.desc(1, h.bufGPA(0), 72, 0, 0)
		h.avail(0)
	}},
	{"avail-jump", func(h *hostile) { // idx more than the queue size ahead (§2.7.6)
		h.desc(0, h.bufGPA(0), 72, 0, 0)
		h.availIdx += 1000
		h.publish()
	}},
}

// round runs one batch of bad chains and every fault case, each on a
// freshly reset and initialised device.
func (h *hostile) round() error {
	if err := h.badChains(); err != nil {
		return err
	}
	if err := h.raceRound(); err != nil {
		return err
	}
	for _, c := range faultCases {
		if err := h.start(); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		c.make(h)
		h.kick()
		t0 := time.Now()
		ok := h.waitStatus(stNeedsReset)
		if ok {
			h.res.NeedsReset++
		} else {
			h.res.Missed[c.name]++
		}
		if h.verbose {
			fmt.Printf("hostile: case %s: needs_reset=%v after %v\n", c.name, ok, time.Since(t0).Round(time.Millisecond))
		}
	}
	return nil
}

// benignRound does what round does to the device, resets and
// initialisations and notifications included, with well-formed frames
// only: a batch of 8 and then one per fault case, each on a freshly reset
// device. Every frame must be used without NEEDS_RESET.
func (h *hostile) benignRound() error {
	batch := func(n int) error {
		if err := h.start(); err != nil {
			return fmt.Errorf("benign: %w", err)
		}
		for i := range n {
			h.goodFrame(i)
			h.desc(uint16(i), h.bufGPA(i), netHdrLen+60, 0, 0)
			h.avail(uint16(i))
		}
		h.kick()
		if !h.waitUsed(uint16(n)) || h.bar.read8(h.common+ccStatus)&stNeedsReset != 0 {
			h.res.Unexpected++
			return nil
		}
		h.res.BenignGood += n
		return nil
	}
	if err := batch(8); err != nil {
		return err
	}
	for range faultCases {
		if err := batch(1); err != nil {
			return err
		}
	}
	return nil
}

// raceFrames is how many frames raceRound races.
const raceFrames = 8

// raceMutations are what raceRound's second thread writes into each frame
// and takes back, one after the other, as fast as it can: offsets from the
// start of the virtio-net header, value pairs. The EtherType becomes a tag
// of VLAN 20 under each TPID some equipment honours; the header asks for
// a partial checksum and TSO with gso_size 1 (offloads this driver did not
// negotiate).
var raceMutations = [][]int{
	{netHdrLen + 12, 0x81, netHdrLen + 13, 0x00, netHdrLen + 14, 0x00, netHdrLen + 15, 20},
	{netHdrLen + 12, 0x91, netHdrLen + 13, 0x00, netHdrLen + 14, 0x00, netHdrLen + 15, 20},
	{netHdrLen + 12, 0x88, netHdrLen + 13, 0xa8, netHdrLen + 14, 0x00, netHdrLen + 15, 20},
	{0, 1, 1, 1, 4, 1, 5, 0},
}

// raceRound is the double-fetch attack: raceFrames well-formed
// frames are made available while a second goroutine (on the guest's other
// vCPU) keeps rewriting their tag bytes and header fields and restoring
// them. The device must use every chain and stay up; whatever it took from
// the frame is its own copy, so it either forwards the frame as copied or
// drops it (a refused header: TxDropBadHeader; a tag on an access port: the
// switch's VLAN drop). The lab test checks the books and that nothing
// reached another VLAN.
func (h *hostile) raceRound() error {
	if err := h.start(); err != nil {
		return fmt.Errorf("race: %w", err)
	}
	for i := range raceFrames {
		h.goodFrame(i)
		h.desc(uint16(i), h.bufGPA(i), netHdrLen+60, 0, 0)
	}
	valid := make([][]byte, raceFrames)
	for i := range valid {
		valid[i] = append([]byte(nil), h.mem.b[(pgBuf+i)*pageSize:][:netHdrLen+60]...)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			m := raceMutations[k%len(raceMutations)]
			for i := range raceFrames {
				b := h.mem.b[(pgBuf+i)*pageSize:]
				for j := 0; j < len(m); j += 2 {
					b[m[j]] = byte(m[j+1])
				}
				for j := 0; j < len(m); j += 2 {
					b[m[j]] = valid[i][m[j]]
				}
			}
		}
	}()
	for i := range raceFrames {
		h.avail(uint16(i))
	}
	h.kick()
	ok := h.waitUsed(raceFrames)
	close(stop)
	<-done
	if st := h.bar.read8(h.common + ccStatus); !ok || st&stNeedsReset != 0 {
		h.res.Unexpected++
		return nil
	}
	h.res.Raced += raceFrames
	return nil
}

// badChains makes bad chains available together with one well-formed
// frame, last: the device must return all of them used and stay up.
func (h *hostile) badChains() error {
	if err := h.start(); err != nil {
		return fmt.Errorf("bad chains: %w", err)
	}
	buf := h.bufGPA(1)
	chains := []struct {
		name  string
		addr  uint64
		len   uint32
		flags uint16
	}{
		{"outside-ram", 1 << 40, 64, 0},
		{"straddles-ram-end", h.ramEnd - 32, 64, 0},
		{"wraps-address-space", ^uint64(0) - 63, 256, 0},
		{"mmio-hole", 0xfee00000, 64, 0},
		{"writable-on-tx", buf, 72, descWrite},
		{"huge-length", buf, 0xffffffff, 0},
		{"runt", buf, 8, 0},
		{"good-frame", h.bufGPA(0), netHdrLen + 60, 0},
	}
	h.goodFrame(0)
	for i, c := range chains {
		h.desc(uint16(i), c.addr, c.len, c.flags, 0)
		h.avail(uint16(i))
	}
	h.kick()
	t0 := time.Now()
	n := len(chains)
	usedAll := h.waitUsed(uint16(n))
	st := h.bar.read8(h.common + ccStatus)
	if !usedAll || st&stNeedsReset != 0 {
		h.res.Unexpected++
	} else {
		h.res.BadChains += n - 1
		h.res.Good++
	}
	if h.verbose {
		for _, c := range chains {
			fmt.Printf("hostile: case %s: addr %#x len %#x flags %#x\n", c.name, c.addr, c.len, c.flags)
		}
		fmt.Printf("hostile: bad chains: all %d used=%v status %#x after %v\n", n, usedAll, st, time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// reset writes 0 to device_status and waits until it reads 0 (§4.1.4.3.2).
func (h *hostile) reset() error {
	h.bar.write8(h.common+ccStatus, 0)
	deadline := time.Now().Add(h.caseWait)
	for h.bar.read8(h.common+ccStatus) != 0 {
		if time.Now().After(deadline) {
			return errors.New("device did not reset")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// start resets the device, clears the rings and initialises it with the
// transmit queue only (§3.1.1, §4.1.5.1.3).
func (h *hostile) start() error {
	if err := h.reset(); err != nil {
		return err
	}
	clear(h.mem.b[:pgBuf*pageSize])
	h.availIdx = 0
	binary.LittleEndian.PutUint16(h.mem.b[pgAvail*pageSize:], availNoIRQ) // we poll
	c := h.common
	h.bar.write8(c+ccStatus, stAcknowledge)
	h.bar.write8(c+ccStatus, stAcknowledge|stDriver)
	h.bar.write32(c+ccDriverFeatureSel, 0)
	h.bar.write32(c+ccDriverFeature, 1<<featIndirect)
	h.bar.write32(c+ccDriverFeatureSel, 1)
	h.bar.write32(c+ccDriverFeature, 1<<(featVersion1-32))
	h.bar.write8(c+ccStatus, stAcknowledge|stDriver|stFeaturesOK)
	if h.bar.read8(c+ccStatus)&stFeaturesOK == 0 {
		return errors.New("FEATURES_OK refused")
	}
	h.bar.write16(c+ccQueueSel, txQueue)
	h.bar.write16(c+ccQueueSize, hostileQSize)
	h.write64(c+ccQueueDesc, h.mem.gpa(pgDesc*pageSize))
	h.write64(c+ccQueueDriver, h.mem.gpa(pgAvail*pageSize))
	h.write64(c+ccQueueDevice, h.mem.gpa(pgUsed*pageSize))
	h.notifyAt = h.notify + int(h.bar.read16(c+ccQueueNotifyOff))*int(h.pci.caps[virtioCapNotify].multiply)
	h.bar.write16(c+ccQueueEnable, 1)
	h.bar.write8(c+ccStatus, stAcknowledge|stDriver|stFeaturesOK|stDriverOK)
	if st := h.bar.read8(c + ccStatus); st&stNeedsReset != 0 || h.bar.read16(c+ccQueueEnable) != 1 {
		return fmt.Errorf("device refused the queue (status %#x)", st)
	}
	return nil
}

func (h *hostile) write64(off int, v uint64) {
	h.bar.write32(off, uint32(v))
	h.bar.write32(off+4, uint32(v>>32))
}

func (h *hostile) bufGPA(i int) uint64 { return h.mem.gpa((pgBuf + i) * pageSize) }

// desc writes descriptor i of the table (struct virtq_desc, §2.7.5).
func (h *hostile) desc(i uint16, addr uint64, n uint32, flags, next uint16) {
	h.putDesc(h.mem.b[pgDesc*pageSize+16*int(i):], addr, n, flags, next)
}

// indirect writes entry i of the indirect table page.
func (h *hostile) indirect(i uint16, addr uint64, n uint32, flags, next uint16) {
	h.putDesc(h.mem.b[pgIndirect*pageSize+16*int(i):], addr, n, flags, next)
}

func (h *hostile) putDesc(b []byte, addr uint64, n uint32, flags, next uint16) {
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// avail makes head available (§2.7.13.2) and publishes the index.
func (h *hostile) avail(head uint16) {
	slot := pgAvail*pageSize + 4 + 2*int(h.availIdx%hostileQSize)
	binary.LittleEndian.PutUint16(h.mem.b[slot:], head)
	h.availIdx++
	h.publish()
}

// publish stores avail->idx after the ring entries (x86 keeps stores in
// order; the call boundary keeps the compiler from reordering).
//
//go:noinline
func (h *hostile) publish() {
	binary.LittleEndian.PutUint16(h.mem.b[pgAvail*pageSize+2:], h.availIdx)
}

// kick notifies the transmit queue (§4.1.5.2).
func (h *hostile) kick() { h.bar.write16(h.notifyAt, txQueue) }

// waitStatus polls device_status for bit.
func (h *hostile) waitStatus(bit uint8) bool {
	deadline := time.Now().Add(h.caseWait)
	for h.bar.read8(h.common+ccStatus)&bit == 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// waitUsed polls used->idx until it reaches n.
func (h *hostile) waitUsed(n uint16) bool {
	deadline := time.Now().Add(h.caseWait)
	for h.usedIdx() != n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

//go:noinline
func (h *hostile) usedIdx() uint16 {
	return binary.LittleEndian.Uint16(h.mem.b[pgUsed*pageSize+2:])
}

// probeDst is the destination of the well-formed frames: a locally
// administered unicast address no guest has.
var probeDst = [6]byte{0x02, 0x68, 0x76, 0x6e, 0x65, 0x74}

// goodFrame writes a virtio_net_hdr (no offloads) and a 60-byte frame of
// the local experimental EtherType 0x88b5 into buffer i.
func (h *hostile) goodFrame(i int) {
	b := h.mem.b[(pgBuf+i)*pageSize:][:netHdrLen+60]
	clear(b)
	var src [6]byte
	for j := range src { // the device's MAC (§5.1.4)
		src[j] = h.bar.read8(h.device + j)
	}
	f := ethernet.Frame(b[netHdrLen:netHdrLen]) // in place: 60 bytes fit
	f.Prepare(probeDst[:], src[:], ethernet.NotTagged, ethernet.Ethertype{0x88, 0xb5}, 46)
	copy(f.Payload(), "hvnet hostile driver probe")
}
