package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	vswitch "github.com/hvnet/hvnet/switch"
)

func (s *Server) portInfo(h *vswitch.PortHandle) Port {
	p := Port{Name: h.Name(), IfIndex: h.IfIndex(), MAC: portMAC(h), Config: toAPIConfig(h.Config()), Counters: toAPICounters(h.Counters()), ACL: portACL(h), SecurityGroup: portSG(h),
		Guest: s.guestInfo(h.Name()), Device: s.deviceCounters(h.Name()), Tunnel: s.tunnelInfo(h.Name()), Bond: s.bondInfo(h.Name())}
	s.portSpec(&p)
	return p
}

// listPorts: GET /v1/ports, every port sorted by name.
func (s *Server) listPorts(w http.ResponseWriter, r *http.Request) {
	out := []Port{}
	for _, c := range s.sw.Counters() {
		if h := s.sw.Port(c.Name); h != nil {
			p := Port{Name: c.Name, IfIndex: h.IfIndex(), MAC: portMAC(h), Config: toAPIConfig(h.Config()), Counters: toAPICounters(c), ACL: portACL(h), SecurityGroup: portSG(h),
				Guest: s.guestInfo(c.Name), Device: s.deviceCounters(c.Name), Tunnel: s.tunnelInfo(c.Name), Bond: s.bondInfo(c.Name)}
			s.portSpec(&p)
			out = append(out, p)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getPort: GET /v1/ports/{name}.
func (s *Server) getPort(w http.ResponseWriter, r *http.Request) {
	h := s.sw.Port(r.PathValue("name"))
	if h == nil {
		writeError(w, noPort(r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, s.portInfo(h))
}

// patchPort: PATCH /v1/ports/{name}, applied live with Switch.UpdatePort.
func (s *Server) patchPort(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var p PortPatch
	if e := decode(r, &p); e != nil {
		writeError(w, e)
		return
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	h := s.sw.Port(name)
	if h == nil {
		writeError(w, noPort(name))
		return
	}
	cfg, e := applyPatch(h.Config(), &p)
	if e != nil {
		writeError(w, e)
		return
	}
	if p.Options != nil {
		for i, sock := range p.Options["socket"] {
			abs, e := s.confinedSocket("options.socket", sock)
			if e != nil {
				writeError(w, e)
				return
			}
			p.Options["socket"][i] = abs
		}
		ou, ok := s.ports.(OptionsUpdater)
		if !ok {
			writeError(w, &Error{Status: http.StatusConflict, Field: "options", Message: "this daemon cannot change a port's options live"})
			return
		}
		if err := ou.UpdateOptions(name, p.Options, cfg); err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				fe = &Error{Status: http.StatusInternalServerError, Message: err.Error()}
			}
			writeError(w, fe)
			return
		}
	}
	if err := s.sw.UpdatePort(cfg); err != nil {
		writeError(w, allocationError(switchError(err, ""), err, &p, ""))
		return
	}
	s.log.Info("port updated", "port", name)
	writeJSON(w, http.StatusOK, s.portInfo(h))
}

// allocationError makes the switch's refusal of reservations that add
// up past a shaped egress's rate (its admission control, vswitch
// sched.go) a 409 naming the field the request changed: the request is
// well formed, the other ports' reservations are in the way. Other
// errors stay e.
func allocationError(e *Error, err error, p *PortPatch, prefix string) *Error {
	if !errors.Is(err, vswitch.ErrOverReserved) {
		return e
	}
	field := "reservation_bps"
	if p.ReservationBPS == nil && p.Egress != nil {
		field = "egress.rate_bps"
	}
	return &Error{Status: http.StatusConflict, Field: prefix + field, Message: err.Error()}
}

// getQueues: GET /v1/ports/{name}/queues, the queues of the port's
// shaped egress: its strict classes' and each sending port's.
func (s *Server) getQueues(w http.ResponseWriter, r *http.Request) {
	h := s.sw.Port(r.PathValue("name"))
	if h == nil {
		writeError(w, noPort(r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, toAPIQueues(h.Config(), h.Queues()))
}

// addPort: POST /v1/ports, through the daemon's PortFactory.
func (s *Server) addPort(w http.ResponseWriter, r *http.Request) {
	var spec PortSpec
	if e := decode(r, &spec); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkSpec(&spec); e != nil {
		writeError(w, e)
		return
	}
	cfg, e := fromConfig(spec.Config)
	if e != nil {
		writeError(w, e)
		return
	}
	if s.ports == nil {
		writeError(w, &Error{Status: http.StatusNotImplemented, Message: "this daemon cannot add ports"})
		return
	}
	if s.sw.Port(cfg.Name) != nil {
		writeError(w, &Error{Status: http.StatusConflict, Field: "config.name", Message: fmt.Sprintf("port %q exists", cfg.Name)})
		return
	}
	if e := s.portsFull(); e != nil { // before a backend starts; checked again when it attaches
		writeError(w, e)
		return
	}
	for i, sock := range spec.Options["socket"] {
		abs, e := s.confinedSocket("options.socket", sock)
		if e != nil {
			writeError(w, e)
			return
		}
		spec.Options["socket"][i] = abs
	}
	attached := false
	err := s.ports.Add(r.Context(), spec, func(p vswitch.Port) (*vswitch.PortHandle, error) {
		s.cfgMu.Lock()
		defer s.cfgMu.Unlock()
		if e := s.portsFull(); e != nil {
			return nil, e
		}
		cfg.MirrorIngress, cfg.MirrorEgress = s.fan.wants(cfg.Name)
		h, err := s.sw.AddPort(cfg, p)
		attached = err == nil
		return h, err
	})
	if err != nil {
		if attached { // the factory failed after attaching: undo
			s.sw.RemovePort(cfg.Name)
		}
		var fe *Error
		if errors.As(err, &fe) { // the factory's answer about the request
			writeError(w, fe)
			return
		}
		e := switchError(err, "config.name")
		if e.Status == http.StatusBadRequest {
			e.Status = http.StatusUnprocessableEntity
		}
		writeError(w, allocationError(e, err, &PortPatch{ReservationBPS: &spec.Config.ReservationBPS}, "config."))
		return
	}
	h := s.sw.Port(cfg.Name)
	if h == nil {
		writeError(w, &Error{Status: http.StatusInternalServerError, Message: "port factory returned without attaching the port"})
		return
	}
	s.log.Info("port added", "port", cfg.Name, "kind", spec.Kind)
	writeJSON(w, http.StatusCreated, s.portInfo(h))
}

// confinedSocket resolves a request's socket path (field) under the
// daemon's socket directory.
func (s *Server) confinedSocket(field, name string) (string, *Error) {
	if s.socketDir == "" {
		return "", &Error{Status: http.StatusNotImplemented, Field: field, Message: "this daemon has no run directory: it cannot add ports with sockets"}
	}
	p, e := confine(field, s.socketDir, name)
	if e != nil {
		return "", e
	}
	return p.socketPath()
}

func (s *Server) checkSpec(sp *PortSpec) *Error {
	kinds := []string{KindVhostUser, KindLab, KindUplink}
	if kl, ok := s.ports.(KindLister); ok {
		kinds = kl.Kinds()
	}
	if !slices.Contains(kinds, sp.Kind) {
		return badField("kind", "%q: want %s", sp.Kind, strings.Join(kinds, ", "))
	}
	return nil
}

// deletePort: DELETE /v1/ports/{name}: detach, then stop the backend.
func (s *Server) deletePort(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.sw.RemovePort(name); err != nil {
		writeError(w, switchError(err, "port"))
		return
	}
	if s.ports != nil {
		if err := s.ports.Remove(name); err != nil {
			s.log.Warn("port backend did not stop cleanly", "port", name, "error", err)
		}
	}
	s.log.Info("port removed", "port", name)
	w.WriteHeader(http.StatusNoContent)
}

// TunnelReporter is implemented by a PortFactory whose ports may be
// tunnels: port answers then show the tunnel's state.
type TunnelReporter interface {
	// Tunnel returns the state of the named port's tunnel, nil when the
	// port is not a tunnel.
	Tunnel(name string) *TunnelInfo
}

func (s *Server) tunnelInfo(name string) *TunnelInfo {
	if tr, ok := s.ports.(TunnelReporter); ok {
		return tr.Tunnel(name)
	}
	return nil
}

// portsFull refuses a new port once the switch has Limits.MaxPorts.
func (s *Server) portsFull() *Error {
	if n := len(s.sw.Counters()); n >= s.limits.MaxPorts {
		return &Error{Status: http.StatusConflict, Message: fmt.Sprintf("the switch has %d ports, the API's limit (Limits.MaxPorts %d): remove one first", n, s.limits.MaxPorts)}
	}
	return nil
}
