package api

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/hvnet/hvnet/conntrack"
	vswitch "github.com/hvnet/hvnet/switch"
)

// Connection tracking of the ports' security groups: each port with a
// group has a table of its own (a conntrack zone) under the switch's
// global limit.

// Bounds of GET /v1/ports/{name}/conntrack: a port may track 65536
// connections (more when the operator says so), and one request does not
// build an answer of megabytes unless asked to.
const (
	DefaultConntrackList = 1000  // entries listed without ?limit=
	MaxConntrackList     = 10000 // the largest ?limit=
)

// MaxConntrackEntries bounds the connection-tracking limits an operator
// may set (conntrack max_entries and max_entries_per_port): 16 Mi
// connections, as vswitch.MaxFDBEntries bounds the FDB.
const MaxConntrackEntries = 1 << 24

// MaxConntrackTimeout bounds a connection-tracking timeout: 30 days (the
// longest default, tcp_established, is 5 days).
const MaxConntrackTimeout = 30 * 24 * time.Hour

// CheckConntrackLimits checks the connection-tracking limits (0: the
// default), naming each by what names it: the topology file's keys or
// the command line's flags.
func CheckConntrackLimits(maxEntries, perPort int, names [2]string) error {
	_, err := ConntrackLimitsError(maxEntries, perPort, names)
	return err
}

// ConntrackLimitsError is CheckConntrackLimits, saying which limit is
// wrong (0 or 1).
func ConntrackLimitsError(maxEntries, perPort int, names [2]string) (int, error) {
	table := maxEntries
	if table == 0 {
		table = conntrack.DefaultTableLimit
	}
	switch {
	case maxEntries < 0 || maxEntries > MaxConntrackEntries:
		return 0, fmt.Errorf("%s %d: outside 1..%d (0 or absent: %d)", names[0], maxEntries, MaxConntrackEntries, conntrack.DefaultTableLimit)
	case perPort < 0 || perPort > MaxConntrackEntries:
		return 1, fmt.Errorf("%s %d: outside 1..%d (0 or absent: %d)", names[1], perPort, MaxConntrackEntries, conntrack.DefaultZoneLimit)
	case perPort > table:
		return 1, fmt.Errorf("%s %d: above %s (%d): one port could fill the switch's table", names[1], perPort, names[0], table)
	}
	return 0, nil
}

// ConntrackTimeouts are how long an idle tracked connection lives, per
// state (conntrack.Timeouts), as Go writes durations ("2m0s"), under the
// topology file's keys.
type ConntrackTimeouts struct {
	TCPSynSent     string `json:"tcp_syn_sent"`
	TCPSynRecv     string `json:"tcp_syn_recv"`
	TCPEstablished string `json:"tcp_established"`
	TCPFinWait     string `json:"tcp_fin_wait"`
	TCPCloseWait   string `json:"tcp_close_wait"`
	TCPLastAck     string `json:"tcp_last_ack"`
	TCPTimeWait    string `json:"tcp_time_wait"`
	TCPClose       string `json:"tcp_close"`
	UDP            string `json:"udp"`
	UDPStream      string `json:"udp_stream"`
	ICMP           string `json:"icmp"`
	Other          string `json:"other"`
}

// ConntrackSettings are the switch's connection-tracking settings,
// defaults resolved (GET /v1/switch's conntrack, the topology file's
// conntrack section).
type ConntrackSettings struct {
	MaxEntries        int               `json:"max_entries"`          // over all ports
	MaxEntriesPerPort int               `json:"max_entries_per_port"` // each port's
	Timeouts          ConntrackTimeouts `json:"timeouts"`
}

// ConntrackInfo resolves c's defaults (package conntrack's: Linux's
// timeouts, 65536 entries per port, 1 Mi in all).
func ConntrackInfo(c conntrack.Config) ConntrackSettings {
	def := conntrack.DefaultTimeouts()
	d := func(v, dv time.Duration) string {
		if v <= 0 {
			v = dv
		}
		return v.String()
	}
	t := c.Timeouts
	out := ConntrackSettings{MaxEntries: c.TableLimit, MaxEntriesPerPort: c.ZoneLimit, Timeouts: ConntrackTimeouts{
		TCPSynSent: d(t.TCPSynSent, def.TCPSynSent), TCPSynRecv: d(t.TCPSynRecv, def.TCPSynRecv),
		TCPEstablished: d(t.TCPEstablished, def.TCPEstablished), TCPFinWait: d(t.TCPFinWait, def.TCPFinWait),
		TCPCloseWait: d(t.TCPCloseWait, def.TCPCloseWait), TCPLastAck: d(t.TCPLastAck, def.TCPLastAck),
		TCPTimeWait: d(t.TCPTimeWait, def.TCPTimeWait), TCPClose: d(t.TCPClose, def.TCPClose),
		UDP: d(t.UDP, def.UDP), UDPStream: d(t.UDPStream, def.UDPStream), ICMP: d(t.ICMP, def.ICMP), Other: d(t.Other, def.Other)}}
	if out.MaxEntries <= 0 {
		out.MaxEntries = conntrack.DefaultTableLimit
	}
	if out.MaxEntriesPerPort <= 0 {
		out.MaxEntriesPerPort = conntrack.DefaultZoneLimit
	}
	return out
}

// ConntrackCounters are a port's connection-tracking counters
// (conntrack.Counters), or their sum.
type ConntrackCounters struct {
	Entries     uint64 `json:"entries"`      // tracked connections now
	New         uint64 `json:"new"`          // connections opened (committed)
	Invalid     uint64 `json:"invalid"`      // frames judged invalid (ct_invalid drops)
	PortFull    uint64 `json:"port_full"`    // new connections refused: the port's table was full
	TableFull   uint64 `json:"table_full"`   // new connections refused: the switch's table was full
	Expired     uint64 `json:"expired"`      // connections removed by their timeout
	Flushed     uint64 `json:"flushed"`      // connections removed by a flush
	Related     uint64 `json:"related"`      // ICMP errors passed as related to a connection
	FragDropped uint64 `json:"frag_dropped"` // fragments refused
}

func toAPICTCounters(c conntrack.Counters) ConntrackCounters {
	return ConntrackCounters{Entries: c.Entries, New: c.New, Invalid: c.Invalid, PortFull: c.ZoneFull, TableFull: c.TableFull,
		Expired: c.Expired, Flushed: c.Flushed, Related: c.Related, FragDropped: c.FragDropped}
}

// ConntrackPackets are a connection's frames per direction, seen from
// the port's guest.
type ConntrackPackets struct {
	Outbound uint64 `json:"outbound"` // sent by the guest
	Inbound  uint64 `json:"inbound"`  // sent to it
}

// ConntrackEntry is one tracked connection, seen from the port's side:
// local is the port's guest, remote the other end.
type ConntrackEntry struct {
	Family   int    `json:"family"`   // 4 or 6
	Protocol string `json:"protocol"` // tcp, udp, icmp, icmpv6, or a number
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	// LocalPort and RemotePort: TCP and UDP.
	LocalPort  *int `json:"local_port,omitempty"`
	RemotePort *int `json:"remote_port,omitempty"`
	ICMPID     *int `json:"icmp_id,omitempty"` // ICMP echo: the identifier
	// Origin is the direction of the frame that opened it: outbound (the
	// guest opened it) or inbound.
	Origin    string           `json:"origin"`
	State     string           `json:"state"`      // TCP's (SYN_SENT, ESTABLISHED, ...), else UNREPLIED or REPLIED
	ExpiresIn int64            `json:"expires_in"` // seconds left before it times out, if idle
	Packets   ConntrackPackets `json:"packets"`
}

// PortConntrack answers GET /v1/ports/{name}/conntrack.
type PortConntrack struct {
	Port    string           `json:"port"`
	Entries []ConntrackEntry `json:"entries"` // at most limit, sorted
	// LeftOut is how many tracked connections the answer leaves out
	// (beyond limit).
	LeftOut    int               `json:"left_out"`
	Limit      int               `json:"limit"`       // the request's (or the default)
	MaxEntries int               `json:"max_entries"` // the port's limit (max_entries_per_port)
	Counters   ConntrackCounters `json:"counters"`
}

// PortConntrackSummary is one port's line of GET /v1/conntrack.
type PortConntrackSummary struct {
	Port     string            `json:"port"`
	Counters ConntrackCounters `json:"counters"`
}

// ConntrackSummary answers GET /v1/conntrack: every port with a security
// group, and the totals over them against the switch's limits.
type ConntrackSummary struct {
	MaxEntries        int                    `json:"max_entries"`
	MaxEntriesPerPort int                    `json:"max_entries_per_port"`
	Counters          ConntrackCounters      `json:"counters"` // summed over the ports listed
	Ports             []PortConntrackSummary `json:"ports"`
}

var protoIsPorts = map[uint8]bool{6: true, 17: true}

// toAPIEntry converts a snapshot of one connection.
func toAPIEntry(e conntrack.Entry) ConntrackEntry {
	k := e.Key
	addr := func(b [16]byte) string {
		if k.Family == 4 { // stored IPv4-mapped (::ffff:a.b.c.d)
			return netip.AddrFrom4([4]byte(b[12:])).String()
		}
		return netip.AddrFrom16(b).String()
	}
	out := ConntrackEntry{Family: int(k.Family), Protocol: protoString(k.Proto), Local: addr(k.Local), Remote: addr(k.Remote),
		Origin: e.Origin.String(), State: e.State, ExpiresIn: int64(max(e.Expires, 0) / time.Second),
		Packets: ConntrackPackets{Outbound: e.Packets[conntrack.Outbound], Inbound: e.Packets[conntrack.Inbound]}}
	switch {
	case protoIsPorts[k.Proto]:
		lp, rp := int(k.LPort), int(k.RPort)
		out.LocalPort, out.RemotePort = &lp, &rp
	case k.Proto == 1 || k.Proto == 58:
		id := int(k.LPort)
		out.ICMPID = &id
	}
	return out
}

// entryCmp orders entries for answers: by family, protocol, remote end,
// then local end.
func entryCmp(a, b conntrack.Entry) int {
	x, y := &a.Key, &b.Key
	return cmp.Or(cmp.Compare(x.Family, y.Family), cmp.Compare(x.Proto, y.Proto),
		slices.Compare(x.Remote[:], y.Remote[:]), cmp.Compare(x.RPort, y.RPort),
		slices.Compare(x.Local[:], y.Local[:]), cmp.Compare(x.LPort, y.LPort))
}

// ctLimits are the switch's connection-tracking limits, as its table
// holds them.
func (s *Server) ctLimits() (table, perPort int) {
	t := s.sw.ConntrackTable()
	return t.Limit(), t.ZoneLimit()
}

// portZone returns the named port's connection-tracking zone, or the
// answer saying why there is none.
func (s *Server) portZone(name string) (*conntrack.Zone, *Error) {
	h := s.sw.Port(name)
	if h == nil {
		return nil, noPort(name)
	}
	z := h.Conntrack()
	if z == nil {
		return nil, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("port %q has no security group: it tracks no connections", name)}
	}
	return z, nil
}

// getPortConntrack: GET /v1/ports/{name}/conntrack[?limit=N], the port's
// tracked connections (at most limit of them) and its counters.
func (s *Server) getPortConntrack(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	limit := DefaultConntrackList
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxConntrackList {
			writeError(w, badField("limit", "%q: want 1..%d", v, MaxConntrackList))
			return
		}
		limit = n
	}
	z, e := s.portZone(name)
	if e != nil {
		writeError(w, e)
		return
	}
	// The first limit entries the zone yields: the answer is bounded
	// whatever the port holds, and the walk stops there.
	var got []conntrack.Entry
	z.Entries(s.sw.Now(), func(en conntrack.Entry) bool {
		got = append(got, en)
		return len(got) < limit
	})
	slices.SortFunc(got, entryCmp)
	_, perPort := s.ctLimits()
	out := PortConntrack{Port: name, Entries: make([]ConntrackEntry, 0, len(got)), Limit: limit, MaxEntries: perPort,
		Counters: toAPICTCounters(z.Counters())}
	for _, en := range got {
		out.Entries = append(out.Entries, toAPIEntry(en))
	}
	if n := z.Len(); n > len(got) {
		out.LeftOut = n - len(got)
	}
	writeJSON(w, http.StatusOK, out)
}

// flushPortConntrack: DELETE /v1/ports/{name}/conntrack forgets the
// port's tracked connections; the rules decide every connection's next
// frame again.
func (s *Server) flushPortConntrack(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	z, e := s.portZone(name)
	if e != nil {
		writeError(w, e)
		return
	}
	n := z.Flush()
	s.log.Info("conntrack flushed", "port", name, "connections", n)
	writeJSON(w, http.StatusOK, Flushed{Flushed: n})
}

// conntrackSummary is every port's connection tracking, by port name.
func (s *Server) conntrackSummary() ConntrackSummary {
	table, perPort := s.ctLimits()
	out := ConntrackSummary{MaxEntries: table, MaxEntriesPerPort: perPort, Ports: []PortConntrackSummary{}}
	portZones(s.sw, func(port string, z *conntrack.Zone) {
		out.Ports = append(out.Ports, PortConntrackSummary{Port: port, Counters: toAPICTCounters(z.Counters())})
	})
	// The table's own totals: they keep the counts of groups since
	// removed.
	out.Counters = toAPICTCounters(s.sw.ConntrackTable().Counters())
	return out
}

// getConntrack: GET /v1/conntrack.
func (s *Server) getConntrack(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.conntrackSummary())
}

// portZones calls fn for each port with a security group, by name.
func portZones(sw *vswitch.Switch, fn func(port string, z *conntrack.Zone)) {
	for _, pc := range sw.Counters() {
		if h := sw.Port(pc.Name); h != nil {
			if z := h.Conntrack(); z != nil {
				fn(pc.Name, z)
			}
		}
	}
}
