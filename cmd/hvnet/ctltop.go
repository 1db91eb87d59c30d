package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hvnet/hvnet/api"
	"github.com/hvnet/hvnet/units"
)

// top is "hvnet ctl top": every port's packets and bits per second in
// and out and drops per second, from the counters' change between two
// samples, refreshed in place on a terminal (one table after another
// otherwise), busiest ports first.
func (c *ctl) top(args []string) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(c.e.stderr)
	interval := fs.Duration("interval", time.Second, "time between samples")
	count := fs.Int("count", 0, "stop after this many tables (0: until interrupted)")
	if _, err := parseWithPositional(fs, args, 0); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		return usageErr("top: --interval %v: want at least 100ms", *interval)
	}
	f, isFile := c.e.stdout.(*os.File)
	tty := isFile && isTTY(f)
	prev, at, err := c.sample()
	if err != nil {
		return err
	}
	for n := 0; *count == 0 || n < *count; n++ {
		select {
		case <-c.ctx.Done():
			return nil
		case <-time.After(*interval):
		}
		cur, now, err := c.sample()
		if err != nil {
			return err
		}
		var b strings.Builder
		if tty {
			b.WriteString("\x1b[H\x1b[2J") // home, clear
		}
		writeTop(&b, prev, cur, now.Sub(at), now)
		if _, err := fmt.Fprint(c.e.stdout, b.String()); err != nil {
			return err
		}
		prev, at = cur, now
	}
	return nil
}

// sample reads every port's counters and when.
func (c *ctl) sample() (map[string]api.Counters, time.Time, error) {
	var ps []api.Port
	b, err := c.c.Raw(c.ctx, http.MethodGet, "/v1/ports", nil)
	if err == nil {
		err = json.Unmarshal(b, &ps)
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	m := make(map[string]api.Counters, len(ps))
	for _, p := range ps {
		m[p.Name] = p.Counters
	}
	return m, time.Now(), nil
}

// topRow is one port's rates.
type topRow struct {
	name                   string
	rxPPS, txPPS           float64
	rxBits, txBits, dropPS float64
}

// writeTop writes the table of rates between two samples dt apart.
func writeTop(w *strings.Builder, prev, cur map[string]api.Counters, dt time.Duration, now time.Time) {
	sec := dt.Seconds()
	rows := make([]topRow, 0, len(cur))
	var tot topRow
	for name, c := range cur {
		p, ok := prev[name]
		if !ok || c.RxPackets < p.RxPackets || c.TxPackets < p.TxPackets { // new, or re-created
			p = api.Counters{}
		}
		r := topRow{name: name,
			rxPPS: float64(c.RxPackets-p.RxPackets) / sec, txPPS: float64(c.TxPackets-p.TxPackets) / sec,
			rxBits: float64(c.RxBytes-p.RxBytes) * 8 / sec, txBits: float64(c.TxBytes-p.TxBytes) * 8 / sec,
			dropPS: float64(totalDrops(c)-min(totalDrops(p), totalDrops(c))) / sec}
		rows = append(rows, r)
		tot.rxPPS, tot.txPPS, tot.rxBits, tot.txBits, tot.dropPS = tot.rxPPS+r.rxPPS, tot.txPPS+r.txPPS,
			tot.rxBits+r.rxBits, tot.txBits+r.txBits, tot.dropPS+r.dropPS
	}
	sort.Slice(rows, func(i, j int) bool {
		if a, b := rows[i].rxPPS+rows[i].txPPS, rows[j].rxPPS+rows[j].txPPS; a != b {
			return a > b
		}
		return rows[i].name < rows[j].name
	})
	fmt.Fprintf(w, "hvnet ctl top: %d ports, %s, every %v\n", len(rows), now.Format("15:04:05"), dt.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PORT\tRX PPS\tRX BIT/S\tTX PPS\tTX BIT/S\tDROPS/S\t")
	tot.name = "total"
	for _, r := range append(rows, tot) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, units.FormatPacketRate(int64(r.rxPPS)), units.FormatBitRate(int64(r.rxBits)),
			units.FormatPacketRate(int64(r.txPPS)), units.FormatBitRate(int64(r.txBits)), fmt.Sprintf("%.0f", r.dropPS))
	}
	tw.Flush()
}
