package api

import (
	"net/http"
	"strconv"

	vswitch "github.com/hvnet/hvnet/switch"
)

// BGP EVPN: the control plane of tunnel ports (kind vxlan with asn=).
// Each such port runs a speaker of its own; the answers name the port.

// EVPNReporter is implemented by a PortFactory whose tunnel ports may
// run a BGP EVPN control plane: GET /v1/evpn/routes and
// /v1/evpn/neighbors list them, /metrics exports their sessions and
// routes.
type EVPNReporter interface {
	// EVPN returns the named port's control plane, nil when it runs none
	// (or the port is not the factory's).
	EVPN(name string) EVPNPort
}

// EVPNPort is one tunnel port's BGP EVPN speaker.
type EVPNPort interface {
	// EVPNNeighbors are its BGP sessions, sorted by address (Port left
	// empty). Called on every scrape: cheap, never waits on a neighbor.
	EVPNNeighbors() []EVPNNeighbor
	// EVPNCounts counts its routes (every scrape: cheap).
	EVPNCounts() EVPNCounts
	// EVPNRoutes lists the routes of its RIB that match f (Port left
	// empty), sorted by type, VNI, MAC, IP, VTEP and source.
	EVPNRoutes(f EVPNRouteFilter) ([]EVPNRoute, error)
}

// EVPNRouteFilter selects routes; zero fields select all.
type EVPNRouteFilter struct {
	Type int         // 2 (MAC/IP) or 3 (inclusive multicast)
	VNI  uint32      // 1..16777215
	MAC  vswitch.MAC // type-2 routes of this MAC (HasMAC)
	// HasMAC: MAC is set (the zero MAC is a MAC too).
	HasMAC bool
}

// EVPNRoute is one route of a tunnel's BGP EVPN speaker: one it
// advertises (source "local") or one a neighbor sent (source: the
// neighbor's address).
type EVPNRoute struct {
	Port         string   `json:"port"`          // the tunnel port whose speaker has it
	Type         int      `json:"type"`          // 2: MAC/IP Advertisement, 3: Inclusive Multicast Ethernet Tag
	RD           string   `json:"rd"`            // route distinguisher, 10.8.0.1:1
	VNI          uint32   `json:"vni"`           // 0: none found (the route is unusable)
	MAC          string   `json:"mac,omitempty"` // type 2
	IP           string   `json:"ip,omitempty"`  // type 2, when the route carries one
	VTEP         string   `json:"vtep"`          // next hop (type 2) or PMSI tunnel endpoint (type 3)
	Seq          uint32   `json:"seq"`           // MAC mobility sequence number (type 2; 0: none)
	RouteTargets []string `json:"route_targets"` // 65000:100
	Source       string   `json:"source"`        // "local" or the neighbor's address
	Best         bool     `json:"best"`          // the best path for its NLRI
	// Accepted: a received best path the speaker takes into account
	// (among the type-2 routes of one MAC, the highest sequence number
	// wins); Reason says why not otherwise (absent for local routes).
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
}

// EVPNNeighbor is a BGP session of a tunnel's EVPN speaker.
type EVPNNeighbor struct {
	Port string `json:"port"` // the tunnel port whose speaker has it
	BGPNeighbor
	Flaps            uint32 `json:"flaps"`              // transitions out of established
	RouteLimitResets uint64 `json:"route_limit_resets"` // sessions reset: the neighbor sent more than max-routes
	RouteLimitHeld   bool   `json:"route_limit_held"`   // held down after such a reset
	BadMessages      uint64 `json:"bad_messages"`       // malformed messages (each ended the session)
}

// EVPNCounts are a speaker's routes by kind.
type EVPNCounts struct {
	LocalMACs   int // type-2 routes advertised
	LocalVNIs   int // type-3 routes advertised
	RemoteMACs  int // received type-2 routes in use
	RemoteVTEPs int // received type-3 routes in use
}

// evpnPorts are the ports running a control plane, sorted by name; only
// the named one when port is not "".
func (s *Server) evpnPorts(port string) ([]string, []EVPNPort, *Error) {
	er, _ := s.ports.(EVPNReporter)
	if port != "" {
		if s.sw.Port(port) == nil {
			return nil, nil, noPort(port)
		}
		var ep EVPNPort
		if er != nil {
			ep = er.EVPN(port)
		}
		if ep == nil {
			return nil, nil, &Error{Status: http.StatusNotFound, Field: "port", Message: "port " + strconv.Quote(port) + " runs no BGP EVPN control plane"}
		}
		return []string{port}, []EVPNPort{ep}, nil
	}
	var names []string
	var eps []EVPNPort
	if er == nil {
		return nil, nil, nil
	}
	for _, c := range s.sw.Counters() {
		if ep := er.EVPN(c.Name); ep != nil {
			names, eps = append(names, c.Name), append(eps, ep)
		}
	}
	return names, eps, nil
}

// checkQuery refuses query parameters other than allowed.
func checkQuery(r *http.Request, allowed ...string) *Error {
next:
	for k := range r.URL.Query() {
		for _, a := range allowed {
			if k == a {
				continue next
			}
		}
		return badField(k, "unknown query parameter")
	}
	return nil
}

// getEVPNRoutes: GET /v1/evpn/routes?port=&vni=&type=&mac=.
func (s *Server) getEVPNRoutes(w http.ResponseWriter, r *http.Request) {
	if e := checkQuery(r, "port", "vni", "type", "mac"); e != nil {
		writeError(w, e)
		return
	}
	q := r.URL.Query()
	var f EVPNRouteFilter
	if v := q.Get("type"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 2 && n != 3) {
			writeError(w, badField("type", "%q is not 2 (MAC/IP) or 3 (inclusive multicast)", v))
			return
		}
		f.Type = n
	}
	if v := q.Get("vni"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 || n > 1<<24-1 {
			writeError(w, badField("vni", "%q is not a VNI (1..16777215)", v))
			return
		}
		f.VNI = uint32(n)
	}
	if v := q.Get("mac"); v != "" {
		m, e := parseMAC("mac", v)
		if e != nil {
			writeError(w, e)
			return
		}
		f.MAC, f.HasMAC = m, true
	}
	names, eps, e := s.evpnPorts(q.Get("port"))
	if e != nil {
		writeError(w, e)
		return
	}
	out := []EVPNRoute{}
	for i, ep := range eps {
		rs, err := ep.EVPNRoutes(f)
		if err != nil {
			writeError(w, &Error{Status: http.StatusServiceUnavailable, Field: "port", Message: names[i] + ": " + err.Error()})
			return
		}
		for _, rt := range rs {
			rt.Port = names[i]
			if rt.RouteTargets == nil {
				rt.RouteTargets = []string{}
			}
			out = append(out, rt)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getEVPNNeighbors: GET /v1/evpn/neighbors?port=.
func (s *Server) getEVPNNeighbors(w http.ResponseWriter, r *http.Request) {
	if e := checkQuery(r, "port"); e != nil {
		writeError(w, e)
		return
	}
	names, eps, e := s.evpnPorts(r.URL.Query().Get("port"))
	if e != nil {
		writeError(w, e)
		return
	}
	out := []EVPNNeighbor{}
	for i, ep := range eps {
		for _, n := range ep.EVPNNeighbors() {
			n.Port = names[i]
			out = append(out, n)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// remoteVTEPs finds the remote VTEP behind each FDB entry on a tunnel
// port (the tunnel's table of remote MACs, by the VNI of the entry's
// VLAN); it asks each tunnel port once.
type remoteVTEPs struct {
	tr     TunnelReporter
	tables map[string]map[vtepKey]string // port → (VLAN, MAC) → VTEP; nil: not a tunnel
}

type vtepKey struct {
	vlan uint16
	mac  string
}

func (s *Server) newRemoteVTEPs() *remoteVTEPs {
	tr, _ := s.ports.(TunnelReporter)
	return &remoteVTEPs{tr: tr, tables: map[string]map[vtepKey]string{}}
}

func (v *remoteVTEPs) lookup(port string, vlan uint16, mac vswitch.MAC) string {
	if v.tr == nil {
		return ""
	}
	t, ok := v.tables[port]
	if !ok {
		if ti := v.tr.Tunnel(port); ti != nil {
			t = map[vtepKey]string{}
			vlans := map[uint32]uint16{}
			for _, vn := range ti.VNIs {
				vlans[vn.VNI] = uint16(vn.VLAN)
			}
			for _, m := range ti.RemoteMACs {
				if vl, ok := vlans[m.VNI]; ok {
					t[vtepKey{vl, m.MAC}] = m.VTEP
				}
			}
		}
		v.tables[port] = t
	}
	return t[vtepKey{vlan, mac.String()}]
}
