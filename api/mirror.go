package api

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	vswitch "github.com/hvnet/hvnet/switch"
)

func parseDir(field, s string) (in, out bool, e *Error) {
	switch s {
	case DirIngress:
		return true, false, nil
	case DirEgress:
		return false, true, nil
	case DirBoth, "":
		return true, true, nil
	}
	return false, false, badField(field, "%q: want ingress, egress or both", s)
}

// syncFlags sets the port's MirrorIngress / MirrorEgress to what its taps
// want; cfgMu is held.
func (s *Server) syncFlags(port string) {
	h := s.sw.Port(port)
	if h == nil {
		return
	}
	cfg := h.Config()
	in, out := s.fan.wants(port)
	if cfg.MirrorIngress == in && cfg.MirrorEgress == out {
		return
	}
	cfg.MirrorIngress, cfg.MirrorEgress = in, out
	if err := s.sw.UpdatePort(cfg); err != nil {
		s.log.Warn("cannot set mirror flags", "port", port, "error", err)
	}
}

func (s *Server) addTap(t *tap) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	s.fan.add(t)
	s.syncFlags(t.port)
}

func (s *Server) removeTap(t *tap) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	s.fan.remove(t)
	s.syncFlags(t.port)
}

// fileMirror writes a tap into a pcap file from its own goroutine,
// flushing whenever its queue runs empty.
type fileMirror struct {
	spec MirrorSpec
	tap  *tap
	f    *os.File
	pw   *vswitch.PcapWriter
	quit chan struct{}
	done chan struct{}
}

func (m *fileMirror) run() {
	defer close(m.done)
	for {
		select {
		case b := <-m.tap.ch:
			m.tap.write(m.pw, b, 0)
			for drained := false; !drained; {
				select {
				case b := <-m.tap.ch:
					m.tap.write(m.pw, b, 0)
				default:
					drained = true
				}
			}
			m.pw.Flush()
		case <-m.quit:
			for {
				select {
				case b := <-m.tap.ch:
					m.tap.write(m.pw, b, 0)
				default:
					m.pw.Flush()
					m.f.Close()
					return
				}
			}
		}
	}
}

// stop ends the writer after it wrote what was queued; the tap is
// already out of the fan-out.
func (m *fileMirror) stop() {
	close(m.quit)
	<-m.done
}

// startMirror: POST /v1/mirrors.
func (s *Server) startMirror(w http.ResponseWriter, r *http.Request) {
	var spec MirrorSpec
	if e := decode(r, &spec); e != nil {
		writeError(w, e)
		return
	}
	in, out, e := parseDir("direction", spec.Direction)
	if e != nil {
		writeError(w, e)
		return
	}
	if spec.Direction == "" {
		spec.Direction = DirBoth
	}
	if s.captureDir == "" {
		writeError(w, &Error{Status: http.StatusNotImplemented, Field: "file", Message: "this daemon has no capture directory: file mirrors are off"})
		return
	}
	path, e := confine("file", s.captureDir, spec.File)
	if e != nil {
		writeError(w, e)
		return
	}
	spec.File = path.abs()
	if s.sw.Port(spec.Port) == nil {
		writeError(w, noPort(spec.Port))
		return
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if _, ok := s.mirrors[spec.Port]; ok {
		writeError(w, &Error{Status: http.StatusConflict, Field: "port", Message: fmt.Sprintf("port %q is already mirrored to a file", spec.Port)})
		return
	}
	f, e := path.createFile(spec.Overwrite)
	if e != nil {
		writeError(w, e)
		return
	}
	pw, err := vswitch.NewPcapWriter(f, vswitch.PcapOptions{Nanosecond: true})
	if err == nil {
		err = pw.Flush()
	}
	if err != nil {
		f.Close()
		writeError(w, &Error{Status: http.StatusUnprocessableEntity, Field: "file", Message: err.Error()})
		return
	}
	m := &fileMirror{spec: spec, tap: newTap(spec.Port, in, out, s.fan.qlen), f: f, pw: pw,
		quit: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	s.mirrors[spec.Port] = m
	s.fan.add(m.tap)
	s.syncFlags(spec.Port)
	s.log.Info("mirror started", "port", spec.Port, "direction", spec.Direction, "file", spec.File)
	writeJSON(w, http.StatusCreated, MirrorInfo{MirrorSpec: spec})
}

// stopMirror: DELETE /v1/mirrors/{port}.
func (s *Server) stopMirror(w http.ResponseWriter, r *http.Request) {
	port := r.PathValue("port")
	s.cfgMu.Lock()
	m, ok := s.mirrors[port]
	if ok {
		delete(s.mirrors, port)
		s.fan.remove(m.tap)
		s.syncFlags(port)
	}
	s.cfgMu.Unlock()
	if !ok {
		writeError(w, &Error{Status: http.StatusNotFound, Field: "port", Message: fmt.Sprintf("port %q has no file mirror", port)})
		return
	}
	m.stop()
	info := MirrorInfo{MirrorSpec: m.spec, Frames: m.tap.frames.Load(), Dropped: m.tap.dropped.Load()}
	s.log.Info("mirror stopped", "port", port, "frames", info.Frames, "dropped", info.Dropped)
	writeJSON(w, http.StatusOK, info)
}

// listMirrors: GET /v1/mirrors.
func (s *Server) listMirrors(w http.ResponseWriter, r *http.Request) {
	s.cfgMu.Lock()
	out := []MirrorInfo{}
	for _, m := range s.mirrors {
		out = append(out, MirrorInfo{MirrorSpec: m.spec, Frames: m.tap.frames.Load(), Dropped: m.tap.dropped.Load()})
	}
	s.cfgMu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// capture: GET /v1/capture/{port}?direction=&count= streams a pcap file
// (draft-ietf-opsawg-pcap §4 header, §5 records; nanosecond magic):
// the header at once, then records as frames pass, flushed per batch,
// until the client goes away or count frames were sent.
func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	port := r.PathValue("port")
	q := r.URL.Query()
	for k := range q {
		if k != "direction" && k != "count" {
			writeError(w, badField(k, "unknown query parameter"))
			return
		}
	}
	in, out, e := parseDir("direction", q.Get("direction"))
	if e != nil {
		writeError(w, e)
		return
	}
	count := 0
	if c := q.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			writeError(w, badField("count", "%q: want a number of frames >= 0", c))
			return
		}
		count = n
	}
	if s.sw.Port(port) == nil {
		writeError(w, noPort(port))
		return
	}
	if n := s.stats.captures.Add(1); n > int64(s.limits.MaxCaptures) {
		s.stats.captures.Add(-1)
		s.stats.capturesRefused.Add(1)
		s.stats.warn(s.log, "api capture limit reached: capture refused", "port", port, "max_captures", s.limits.MaxCaptures)
		writeError(w, &Error{Status: http.StatusTooManyRequests, Message: fmt.Sprintf("%d live captures already (the daemon's limit)", s.limits.MaxCaptures)})
		return
	}
	defer s.stats.captures.Add(-1)
	// The stream has no overall write deadline (a stream route): each
	// batch gets WriteTimeout to be written, so a reader that stops
	// reading is cut off, and one waiting for frames is not.
	rc := http.NewResponseController(w)
	extend := func() { rc.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout)) } // error: a test's recorder
	t := newTap(port, in, out, s.fan.qlen)
	s.addTap(t)
	defer s.removeTap(t)
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.WriteHeader(http.StatusOK)
	extend()
	pw, err := vswitch.NewPcapWriter(w, vswitch.PcapOptions{Nanosecond: true})
	flush := func() error {
		if err := pw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err != nil || flush() != nil {
		return
	}
	s.log.Debug("capture started", "port", port)
	defer func() {
		s.log.Debug("capture ended", "port", port, "frames", t.frames.Load(), "dropped", t.dropped.Load())
	}()
	sent := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-t.ch:
			extend()
			for b != nil {
				n, err := t.write(pw, b, count-sent)
				if err != nil {
					return
				}
				sent += n
				if count > 0 && sent >= count {
					break
				}
				select {
				case b = <-t.ch:
				default:
					b = nil
				}
			}
			if flush() != nil {
				return
			}
			if count > 0 && sent >= count {
				return
			}
		}
	}
}
