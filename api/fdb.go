package api

import (
	"fmt"
	"net/http"
	"strconv"

	vswitch "github.com/hvnet/hvnet/switch"
)

// query reads an optional VLAN and port from the query string.
func (s *Server) fdbFilter(r *http.Request) (port string, vid uint16, e *Error) {
	q := r.URL.Query()
	for k := range q {
		if k != "port" && k != "vlan" && k != "mac" {
			return "", 0, badField(k, "unknown query parameter")
		}
	}
	if port = q.Get("port"); port != "" && s.sw.Port(port) == nil {
		return "", 0, noPort(port)
	}
	if v := q.Get("vlan"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return "", 0, badField("vlan", "%q is not a number", v)
		}
		if vid, e = checkVLAN("vlan", n); e != nil {
			return "", 0, e
		}
	}
	return port, vid, nil
}

// getFDB: GET /v1/fdb?port=&vlan=&mac=.
func (s *Server) getFDB(w http.ResponseWriter, r *http.Request) {
	port, vid, e := s.fdbFilter(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var mac vswitch.MAC
	ms := r.URL.Query().Get("mac")
	if ms != "" {
		if mac, e = parseMAC("mac", ms); e != nil {
			writeError(w, e)
			return
		}
	}
	out := []FDBEntry{}
	vteps := s.newRemoteVTEPs()
	for _, fe := range s.sw.FDB() {
		if (port != "" && fe.Port != port) || (vid != 0 && fe.VLAN != vid) || (ms != "" && fe.MAC != mac) {
			continue
		}
		out = append(out, FDBEntry{Port: fe.Port, VLAN: int(fe.VLAN), MAC: fe.MAC.String(), Age: fe.Age, Static: fe.Static, Pinned: fe.Pinned,
			VTEP: vteps.lookup(fe.Port, fe.VLAN, fe.MAC)})
	}
	writeJSON(w, http.StatusOK, out)
}

// flushFDB: DELETE /v1/fdb?port=&vlan= removes dynamic entries.
func (s *Server) flushFDB(w http.ResponseWriter, r *http.Request) {
	port, vid, e := s.fdbFilter(r)
	if e == nil && r.URL.Query().Has("mac") {
		e = badField("mac", "flush filters by port and vlan only")
	}
	if e != nil {
		writeError(w, e)
		return
	}
	n, err := s.sw.Flush(port, vid)
	if err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("fdb flushed", "port", port, "vlan", vid, "entries", n)
	writeJSON(w, http.StatusOK, Flushed{Flushed: n})
}

// addStatic: POST /v1/fdb.
func (s *Server) addStatic(w http.ResponseWriter, r *http.Request) {
	var se StaticEntry
	if e := decode(r, &se); e != nil {
		writeError(w, e)
		return
	}
	vid, e := checkVLAN("vlan", se.VLAN)
	if e != nil {
		writeError(w, e)
		return
	}
	mac, e := parseMAC("mac", se.MAC)
	if e == nil && mac[0]&1 != 0 {
		e = badField("mac", "%s is a group address", se.MAC)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	if s.sw.Port(se.Port) == nil {
		writeError(w, noPort(se.Port))
		return
	}
	s.cfgMu.Lock() // count and add as one step
	if e := s.staticFull(vid, mac); e != nil {
		s.cfgMu.Unlock()
		writeError(w, e)
		return
	}
	err := s.sw.AddStatic(se.Port, vid, mac)
	s.cfgMu.Unlock()
	if err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	s.log.Info("static fdb entry added", "port", se.Port, "vlan", vid, "mac", mac.String())
	writeJSON(w, http.StatusCreated, FDBEntry{Port: se.Port, VLAN: int(vid), MAC: mac.String(), Static: true})
}

// deleteStatic: DELETE /v1/fdb/{vlan}/{mac}.
func (s *Server) deleteStatic(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("vlan"))
	if err != nil {
		writeError(w, badField("vlan", "%q is not a number", r.PathValue("vlan")))
		return
	}
	vid, e := checkVLAN("vlan", n)
	if e != nil {
		writeError(w, e)
		return
	}
	mac, e := parseMAC("mac", r.PathValue("mac"))
	if e != nil {
		writeError(w, e)
		return
	}
	if err := s.sw.DeleteStatic(vid, mac); err != nil {
		writeError(w, switchError(err, ""))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// staticFull refuses a new static FDB entry once the switch has
// Limits.MaxStaticEntries (replacing one of them, same VLAN and MAC, is
// not new); s.cfgMu is held.
func (s *Server) staticFull(vid uint16, mac vswitch.MAC) *Error {
	n := 0
	for _, e := range s.sw.FDB() {
		if !e.Static {
			continue
		}
		if e.VLAN == vid && e.MAC == mac {
			return nil
		}
		n++
	}
	if n >= s.limits.MaxStaticEntries {
		return &Error{Status: http.StatusConflict, Message: fmt.Sprintf("%d static FDB entries, the API's limit (Limits.MaxStaticEntries %d): delete one first", n, s.limits.MaxStaticEntries)}
	}
	return nil
}
