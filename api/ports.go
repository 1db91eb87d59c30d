package api

import (
	"fmt"
	"net/http"

	vswitch "hvnet/switch"
)

func (s *Server) portInfo(h *vswitch.PortHandle) Port {
	return Port{Name: h.Name(), MAC: portMAC(h), Config: toAPIConfig(h.Config()), Counters: toAPICounters(h.Counters()), ACL: portACL(h),
		Guest: s.guestInfo(h.Name()), Device: s.deviceCounters(h.Name())}
}

// listPorts: GET /v1/ports, every port sorted by name.
func (s *Server) listPorts(w http.ResponseWriter, r *http.Request) {
	out := []Port{}
	for _, c := range s.sw.Counters() {
		if h := s.sw.Port(c.Name); h != nil {
			out = append(out, Port{Name: c.Name, MAC: portMAC(h), Config: toAPIConfig(h.Config()), Counters: toAPICounters(c), ACL: portACL(h),
				Guest: s.guestInfo(c.Name), Device: s.deviceCounters(c.Name)})
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
	if err := s.sw.UpdatePort(cfg); err != nil {
		writeError(w, switchError(err, ""))
		return
	}
	s.log.Info("port updated", "port", name)
	writeJSON(w, http.StatusOK, s.portInfo(h))
}

// addPort: POST /v1/ports, through the daemon's PortFactory.
func (s *Server) addPort(w http.ResponseWriter, r *http.Request) {
	var spec PortSpec
	if e := decode(r, &spec); e != nil {
		writeError(w, e)
		return
	}
	if e := checkSpec(&spec); e != nil {
		writeError(w, e)
		return
	}
	cfg, e := fromConfig(spec.Config)
	if e != nil {
		writeError(w, e)
		return
	}
	if spec.Kind == KindLab {
		if e := checkGuest(spec.Guest); e != nil {
			writeError(w, e)
			return
		}
	}
	if s.ports == nil {
		writeError(w, &Error{Status: http.StatusNotImplemented, Message: "this daemon cannot add ports"})
		return
	}
	if s.sw.Port(cfg.Name) != nil {
		writeError(w, &Error{Status: http.StatusConflict, Field: "config.name", Message: fmt.Sprintf("port %q exists", cfg.Name)})
		return
	}
	if spec.Kind == KindVhostUser {
		if e := s.confineSocket(&spec); e != nil {
			writeError(w, e)
			return
		}
	}
	attached := false
	err := s.ports.Add(r.Context(), spec, func(p vswitch.Port) (*vswitch.PortHandle, error) {
		s.cfgMu.Lock()
		defer s.cfgMu.Unlock()
		cfg.MirrorIngress, cfg.MirrorEgress = s.fan.wants(cfg.Name)
		h, err := s.sw.AddPort(cfg, p)
		attached = err == nil
		return h, err
	})
	if err != nil {
		if attached { // the factory failed after attaching: undo
			s.sw.RemovePort(cfg.Name)
		}
		e := switchError(err, "config.name")
		if e.Status == http.StatusBadRequest {
			e.Status = http.StatusUnprocessableEntity
		}
		writeError(w, e)
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

// confineSocket puts a vhost-user port's socket (either mode: a client
// must not connect to just any socket either) under the daemon's socket
// directory and makes sp.Socket its absolute path.
func (s *Server) confineSocket(sp *PortSpec) *Error {
	if s.socketDir == "" {
		return &Error{Status: http.StatusNotImplemented, Field: "socket", Message: "this daemon has no run directory: it cannot add vhost-user ports"}
	}
	p, e := confine("socket", s.socketDir, sp.Socket)
	if e != nil {
		return e
	}
	abs, e := p.socketPath()
	if e != nil {
		return e
	}
	sp.Socket = abs
	return nil
}

func checkSpec(sp *PortSpec) *Error {
	switch sp.Kind {
	case KindVhostUser:
		if sp.Socket == "" {
			return badField("socket", "a vhost-user port needs a socket path")
		}
		if sp.SocketMode != "" && sp.SocketMode != "server" && sp.SocketMode != "client" {
			return badField("socket_mode", "%q: want server or client", sp.SocketMode)
		}
	case KindUplink:
		if sp.Interface == "" {
			return badField("interface", "an uplink needs an interface")
		}
		if sp.TXMode != "" && sp.TXMode != "ring" && sp.TXMode != "sendmmsg" {
			return badField("tx_mode", "%q: want ring or sendmmsg", sp.TXMode)
		}
	case KindLab: // its guest: checkGuest, after the port's configuration
	default:
		return badField("kind", "%q: want vhost-user, lab or uplink", sp.Kind)
	}
	if sp.Guest != nil && sp.Kind != KindLab {
		return badField("guest", "only for kind lab")
	}
	if sp.Queues < 0 || sp.Queues > 16 {
		return badField("queues", "%d outside 0..16", sp.Queues)
	}
	if sp.MAC != "" {
		if m, e := parseMAC("mac", sp.MAC); e != nil {
			return e
		} else if m[0]&1 != 0 {
			return badField("mac", "%s is a group address", sp.MAC)
		}
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
