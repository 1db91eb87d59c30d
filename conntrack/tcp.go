package conntrack

// TCP connection tracking, after Linux's net/netfilter/
// nf_conntrack_proto_tcp.c (its state table, tcp_valid_flags, tcp_new,
// tcp_in_window and nf_conntrack_tcp_packet, with the default sysctls:
// tcp_loose=1, tcp_be_liberal=0, tcp_max_retrans=3), which itself follows
// Guido van Rooij, "Real Stateful TCP Packet Filtering in IP Filter"
// (SANE 2000). The code is written from that description, not copied.
//
// Direction index 0 is the side that opened the connection ("original"),
// 1 the other ("reply"); seen[d] is what the sender in direction d did:
//
//	end    = max(seq + len) it sent
//	maxend = max(ack + max(win, 1)) the other side allowed it
//	maxwin = max(win + (sack - ack)) it advertised, grown when it was overrun
//
// and a segment from sender S to receiver R passes when
//
//	I.   seq <= S.maxend                                  (else Invalid)
//	II.  seq + len >= S.end - R.maxwin                     (else passed, ignored)
//	III. sack <= R.end                                     (else Invalid)
//	IV.  sack >= R.end - max(S.maxwin, 66000)              (else passed, ignored)
//
// Like Linux, a segment that fails II or IV (an old retransmission, an
// overly delayed ACK) passes without updating the state; a segment that
// fails I or III is Invalid, except that a segment overrunning the window
// by at most the receiver's largest window passes (stacks that send a
// little more than allowed). A connection picked up mid-stream never
// saw the window scale options, so, as in Linux's tcp_new, both its
// directions are liberal: states advance, windows are learned (end,
// maxend, maxwin follow the segments, for the timeouts) but never
// enforced.
//
// Two deliberate leniencies beyond Linux: a FIN+ACK for an unknown
// connection is a loose pickup (into FIN_WAIT) rather than Invalid, so a
// connection whose entry was lost can still close; and a SYN from either
// side on a CLOSE or TIME_WAIT entry reopens it (the old entry goes, the
// SYN is New, rules decide).

// TCP states (Linux's enum tcp_conntrack order).
const (
	tcpNone uint8 = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
	tcpSynSent2 // a SYN from the reply side while in SYN_SENT: simultaneous open
	tcpNumStates

	tcpIV = tcpNumStates     // invalid transition
	tcpIG = tcpNumStates + 1 // ignored: passes without changing the state
)

var tcpStateNames = [tcpNumStates]string{
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
}

// Segment classes (get_conntrack_index).
const (
	tiSyn = iota
	tiSynAck
	tiFin
	tiAck
	tiRst
	tiNone
)

func tcpIndex(f uint8) uint8 {
	switch {
	case f&FlagRST != 0:
		return tiRst
	case f&FlagSYN != 0:
		if f&FlagACK != 0 {
			return tiSynAck
		}
		return tiSyn
	case f&FlagFIN != 0:
		return tiFin
	case f&FlagACK != 0:
		return tiAck
	}
	return tiNone
}

// Short names for the table, as in Linux's.
const (
	sNO = tcpNone
	sSS = tcpSynSent
	sSR = tcpSynRecv
	sES = tcpEstablished
	sFW = tcpFinWait
	sCW = tcpCloseWait
	sLA = tcpLastAck
	sTW = tcpTimeWait
	sCL = tcpClose
	sS2 = tcpSynSent2
	sIV = tcpIV
	sIG = tcpIG
)

// tcpTrans[dir][class][state] is the next state: Linux's tcp_conntracks,
// but for the two leniencies described above, marked *.
var tcpTrans = [2][6][tcpNumStates]uint8{
	{ // original direction
		//         sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		tiSyn:    {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		tiSynAck: {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR},
		tiFin:    {sFW, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV}, // * sNO: sIV in Linux
		tiAck:    {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		tiRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		tiNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{ // reply direction
		//         sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
		tiSyn:    {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sSS, sS2}, // * sCL: sIV in Linux
		tiSynAck: {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		tiFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		tiAck:    {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		tiRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		tiNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}

// tcpValidFlagsTable is Linux's tcp_valid_flags, over FIN|SYN|RST|ACK|URG
// (PSH, and ECE/CWR which Packet.Flags leaves out, are always valid).
var tcpValidFlagsTable = [64]bool{
	FlagSYN:                     true,
	FlagSYN | FlagURG:           true,
	FlagSYN | FlagACK:           true,
	FlagRST:                     true,
	FlagRST | FlagACK:           true,
	FlagFIN | FlagACK:           true,
	FlagFIN | FlagACK | FlagURG: true,
	FlagACK:                     true,
	FlagACK | FlagURG:           true,
}

// tcpValidFlags reports whether a segment's flags are a possible
// combination (no SYN+FIN, SYN+RST, FIN without ACK, NULL, ...).
func tcpValidFlags(f uint8) bool { return tcpValidFlagsTable[f&^FlagPSH&0x3f] }

// tcpCanOpen reports whether a segment (with valid flags) may open an
// entry: a SYN (SYN_SENT), or a loose pickup of an ACK or FIN+ACK.
func tcpCanOpen(f uint8) bool {
	switch tcpIndex(f) {
	case tiSyn, tiAck, tiFin:
		return true
	}
	return false
}

// tcpDir flags.
const (
	tdWScale    = 1 << iota // sent the window scale option in its SYN
	tdLiberal               // windows not enforced (picked up mid-stream)
	tdMaxAckSet             // maxack holds a value
	tdCloseInit             // sent the first FIN
	tdUnacked               // sent data the other side has not acknowledged
)

// tcpDir is what one side of a connection did (Linux's ip_ct_tcp_state).
type tcpDir struct {
	end, maxend, maxwin, maxack uint32
	scale                       uint8
	flags                       uint8
}

// last-segment flags.
const (
	lfWScale       = 1 << iota // the ignored SYN had a window scale option
	lfChallengeAck             // an ignored SYN in LAST_ACK may draw a challenge ACK (RFC 5961 §4)
	lfSimOpen                  // simultaneous open
)

// tcpConn is a TCP entry's state beyond its state number.
type tcpConn struct {
	seen                      [2]tcpDir
	lastSeq, lastAck, lastEnd uint32
	lastWin                   uint16
	lastDir, lastIndex        uint8
	lastWScale, lastFlags     uint8
	retrans                   uint8
}

// tcpMaxRetrans is Linux's nf_conntrack_tcp_max_retrans.
const tcpMaxRetrans = 3

// maxAckWinConst is Linux's MAXACKWINCONST: the least slack for IV.
const maxAckWinConst = 66000

func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
func seqAfter(a, b uint32) bool  { return int32(b-a) < 0 }

// tcpSeg is what TCP tracking reads of a segment: Packet's TCP fields,
// or the fast path's (fast.go), which builds no Packet.
type tcpSeg struct {
	seq, ack, sack, payLen uint32 // as Packet's Seq, Ack, SAck, PayLen
	win                    uint16
	flags                  uint8
	wscale                 int8
}

func (p *Packet) tcpSeg() tcpSeg {
	return tcpSeg{seq: p.Seq, ack: p.Ack, sack: p.SAck, payLen: p.PayLen, win: p.Win, flags: p.Flags, wscale: p.WScale}
}

// tcpEnd is the sequence number after the segment (SYN and FIN count one).
func tcpEnd(p *tcpSeg) uint32 {
	end := p.seq + p.payLen
	if p.flags&FlagSYN != 0 {
		end++
	}
	if p.flags&FlagFIN != 0 {
		end++
	}
	return end
}

// tcpOptions records a SYN's window scale in s (Linux's tcp_options).
func tcpOptions(s *tcpDir, p *tcpSeg) {
	s.scale = 0
	s.flags &= tdLiberal
	if p.wscale >= 0 {
		s.scale = uint8(min(p.wscale, 14))
		s.flags |= tdWScale
	}
}

// tcpNew initialises a new entry from the segment that opens it (Linux's
// tcp_new): a SYN sets up the original direction; a pickup learns what
// it can from the segment and makes both directions liberal.
func tcpNew(e *entry, p *tcpSeg) {
	e.tcp = tcpConn{lastIndex: tiNone}
	s := &e.tcp.seen[0]
	s.end = tcpEnd(p)
	s.maxwin = max(uint32(p.win), 1)
	if tcpIndex(p.flags) == tiSyn {
		s.maxend = s.end
		tcpOptions(s, p)
		return
	}
	s.maxend = s.end + s.maxwin
	e.tcp.seen[0].flags = tdLiberal
	e.tcp.seen[1].flags = tdLiberal
}

// tcpAction is tcpPacket's result.
type tcpAction uint8

const (
	tcpAccept  tcpAction = iota // in window: state advanced, entry refreshed
	tcpIgnore                   // passes, state untouched
	tcpInvalid                  // Invalid
	tcpReopen                   // a SYN on a closed entry: remove it, the SYN is New
	tcpKill                     // passes, and the entry is to be removed
)

// tcpPacket advances entry e by segment p in direction d (0 original,
// 1 reply) at time now (Linux's nf_conntrack_tcp_packet). The caller
// holds e's shard lock and has checked p's flags.
func (z *Zone) tcpPacket(e *entry, p *tcpSeg, d int, now int64) tcpAction {
	t := &e.tcp
	old := e.state
	idx := tcpIndex(p.flags)
	next := tcpTrans[d][idx][old]
	skipWindow := false

	switch next {
	case tcpSynSent:
		if old < tcpTimeWait {
			break
		}
		// RFC 1122 §4.2.2.13: a SYN may reopen a connection in
		// TIME-WAIT; and one in CLOSE was reset. Linux kills the
		// entry and looks the SYN up again: here, it is New.
		return tcpReopen

	case tcpIG:
		// The entry may be out of sync with the endpoints: let the
		// segment pass without acting on it; if it was bad, the
		// receiver's RST is caught below.
		if idx == tiSynAck && t.lastIndex == tiSyn && int(t.lastDir) != d && p.ack == t.lastEnd {
			// This SYN/ACK answers a SYN we ignored: the endpoints
			// started a new connection. Get in sync with it.
			old, next = tcpSynSent, tcpSynRecv
			ls := &t.seen[t.lastDir]
			ls.end = t.lastEnd
			ls.maxend = t.lastEnd
			ls.maxwin = max(uint32(t.lastWin), 1)
			ls.scale = t.lastWScale
			ls.flags = ls.flags&tdLiberal | tdDirFlags(t.lastFlags)
			t.lastFlags &^= lfChallengeAck
			t.seen[d] = tcpDir{flags: t.seen[d].flags & tdLiberal}
			break
		}
		t.lastIndex = idx
		t.lastDir = uint8(d)
		t.lastSeq = p.seq
		t.lastEnd = tcpEnd(p)
		t.lastWin = p.win
		if idx == tiSyn && d == 0 {
			t.lastFlags, t.lastWScale = 0, 0
			if p.wscale >= 0 {
				t.lastFlags |= lfWScale
				t.lastWScale = uint8(min(p.wscale, 14))
			}
			if old == tcpLastAck {
				t.lastFlags |= lfChallengeAck
			}
		}
		if old == tcpSynSent && idx == tiAck && d == 1 {
			t.lastAck = p.ack // a possible challenge ACK to the SYN
		}
		return tcpIgnore

	case tcpIV:
		return tcpInvalid

	case tcpTimeWait:
		// RFC 5961 §4: a stack answers a SYN in LAST_ACK with a
		// challenge ACK, which does not acknowledge the last FIN.
		if old == tcpLastAck && idx == tiAck && int(t.lastDir) != d &&
			t.lastIndex == tiSyn && t.lastFlags&lfChallengeAck != 0 {
			t.lastFlags &^= lfChallengeAck
			return tcpIgnore
		}

	case tcpSynSent2:
		t.lastFlags |= lfSimOpen

	case tcpSynRecv:
		if d == 1 && idx == tiAck && t.lastFlags&lfSimOpen != 0 {
			next = tcpEstablished
		}

	case tcpClose:
		if idx != tiRst {
			break
		}
		if old >= tcpFinWait && old <= tcpClose {
			// Closing: the tuple may be reused already and the
			// windows stale; Linux skips the checks (tcp_can_early_drop).
			skipWindow = true
			break
		}
		established := old == tcpEstablished && e.flags&efAssured != 0
		if r := &t.seen[1-d]; r.flags&tdMaxAckSet != 0 && t.lastIndex != tiSyn {
			if p.seq == 0 && !established {
				break // most likely an answer to a SYN we let through
			}
			if seqBefore(p.seq, r.maxack) {
				return tcpInvalid // before what the peer acknowledged: not its RST
			}
			if !established || p.seq == r.maxack {
				break
			}
			if t.lastIndex == tiAck && int(t.lastDir) == d && p.seq == t.lastEnd {
				break // the RST that ends a train of data
			}
			// In window but not exactly where expected: RFC 5961 §3.2
			// has the receiver send a challenge ACK. Keep the state.
			next = old
		}
		if ((e.flags&efSeenReply != 0 && t.lastIndex == tiSyn) ||
			(e.flags&efAssured == 0 && t.lastIndex == tiAck)) && p.ack == t.lastEnd {
			// A RST answering a SYN or ACK we let through while out of
			// sync: it may acknowledge what we ignored.
			skipWindow = true
			break
		}
		if old == tcpSynSent && t.lastIndex == tiAck && t.lastDir == 1 && p.seq == t.lastAck {
			skipWindow = true // a RST answering a challenge ACK
		}
	}

	if !skipWindow {
		switch tcpInWindow(t, e.state, d, idx, p) {
		case tcpIgnore:
			return tcpIgnore
		case tcpInvalid:
			return tcpInvalid
		}
	}

	t.lastIndex = idx
	t.lastDir = uint8(d)
	e.state = next
	if old != next && next == tcpFinWait {
		t.seen[d].flags |= tdCloseInit
	}

	to := z.t.to.Load()
	tmo := to.tcp[next]
	switch {
	case t.retrans >= tcpMaxRetrans && tmo > to.retrans:
		tmo = to.retrans
	case idx == tiRst:
		tmo = to.tcp[tcpClose]
	case (t.seen[0].flags|t.seen[1].flags)&tdUnacked != 0 && tmo > to.unack:
		tmo = to.unack
	case t.lastWin == 0 && tmo > to.retrans:
		tmo = to.retrans
	}
	if e.flags&efSeenReply == 0 {
		if idx == tiRst {
			// Only a RST came back: no connection to remember.
			return tcpKill
		}
		if idx == tiSyn && old == tcpSynSent {
			// A retransmitted SYN does not extend the entry, or a
			// client reusing its port would keep it forever.
			return tcpAccept
		}
		if next == tcpEstablished && tmo > to.unack {
			tmo = to.unack // a pickup not yet answered
		}
	} else if e.flags&efAssured == 0 && (old == tcpSynRecv || old == tcpEstablished) && next == tcpEstablished {
		e.flags |= efAssured
	}
	e.expires = now + tmo
	return tcpAccept
}

// tdDirFlags turns the flags of an ignored SYN into a tcpDir's.
func tdDirFlags(lf uint8) uint8 {
	if lf&lfWScale != 0 {
		return tdWScale
	}
	return 0
}

// tcpInitSender sets up sender s from its SYN or SYN/ACK (Linux's
// tcp_init_sender). RFC 7323 §2.2: window scaling is used only when
// both sides sent the option.
func tcpInitSender(s, r *tcpDir, p *tcpSeg, end uint32, d int) {
	s.end = end
	s.maxend = end
	s.maxwin = max(uint32(p.win), 1)
	tcpOptions(s, p)
	if d == 1 && (s.flags&tdWScale == 0 || r.flags&tdWScale == 0) {
		s.scale = 0
		r.scale = 0
	}
}

// tcpInWindow checks segment p from direction d against the windows
// and updates them (Linux's tcp_in_window; the bounds I-IV above).
// state is the entry's state before p. It returns tcpAccept, tcpIgnore
// (pass, but change nothing) or tcpInvalid.
func tcpInWindow(t *tcpConn, state uint8, d int, idx uint8, p *tcpSeg) tcpAction {
	snd, rcv := &t.seen[d], &t.seen[1-d]
	seq, ack, sack := p.seq, p.ack, p.sack
	win := uint32(p.win)
	end := tcpEnd(p)
	syn := p.flags&FlagSYN != 0
	hasAck := p.flags&FlagACK != 0

	if snd.maxwin == 0 {
		if syn {
			// The SYN/ACK answering the SYN, or the reply side's SYN
			// in a simultaneous open.
			tcpInitSender(snd, rcv, p, end, d)
			if !hasAck {
				return tcpAccept
			}
		} else {
			// The first segment from this side, mid-stream: learn
			// from it.
			snd.end = end
			snd.maxwin = max(win<<snd.scale, 1)
			snd.maxend = end + snd.maxwin
			if rcv.maxwin == 0 {
				// Nothing seen from the other side either: make its
				// ACK bounds (III, IV) pass until it speaks.
				rcv.end = sack
				rcv.maxend = sack
			} else if sack == rcv.end+1 {
				rcv.end++ // an answer to a keep-alive (III)
			}
		}
	} else if syn && seqAfter(end, snd.end) && (state == tcpSynSent || state == tcpSynRecv) {
		// RFC 9293 §3.4.1 (RFC 793's "if a TCP is reinitialized ..."):
		// a new SYN with a later sequence number replaces the first.
		tcpInitSender(snd, rcv, p, end, d)
		if d == 1 && !hasAck {
			return tcpAccept
		}
	}

	if !hasAck {
		ack = rcv.end // no ACK: as if it acknowledged what it could
		sack = ack
	} else if p.flags&FlagRST != 0 && ack == 0 {
		ack = rcv.end // stacks that send RST+ACK with ack 0
		sack = ack
	}
	if p.flags&FlagRST != 0 && seq == 0 && state == tcpSynSent {
		seq = snd.end // a RST answering a SYN
		end = seq
	}

	// A liberal sender (a pickup) is never refused, and, unlike
	// Linux's, learns from every segment: its bounds then follow the
	// data, and so do its timeouts (tdUnacked).
	liberal := snd.flags&tdLiberal != 0
	maxAckWin := max(snd.maxwin, maxAckWinConst)

	if !seqBefore(seq, snd.maxend+1) { // I
		overshot := end - snd.maxend + 1
		ackOK := seqAfter(sack, rcv.end-maxAckWin-1)
		inRecv := rcv.maxwin != 0 && seqAfter(end, snd.end-rcv.maxwin-1)
		if inRecv && ackOK && overshot <= rcv.maxwin && seqBefore(sack, rcv.end+1) {
			// A stack sending more than the window allows: pass it,
			// and take its end, so that the ACK for it is not "over
			// the upper bound".
			snd.end = end
			snd.flags |= tdUnacked
			if !liberal {
				return tcpIgnore
			}
		} else if !liberal {
			return tcpInvalid
		}
	}
	if !liberal {
		if !seqBefore(sack, rcv.end+1) { // III: acknowledges data not seen
			return tcpInvalid
		}
		if rcv.maxwin != 0 && !seqAfter(end, snd.end-rcv.maxwin-1) { // II: an old retransmission
			return tcpIgnore
		}
		if !seqAfter(sack, rcv.end-maxAckWin-1) { // IV: an overly delayed ACK
			return tcpIgnore
		}
	}

	if !syn {
		win <<= snd.scale // RFC 7323 §2.3: never in a SYN
	}
	if swin := win + (sack - ack); snd.maxwin < swin {
		snd.maxwin = swin
	}
	if seqAfter(end, snd.end) {
		snd.end = end
		snd.flags |= tdUnacked
	}
	if hasAck {
		if snd.flags&tdMaxAckSet == 0 {
			snd.maxack = ack
			snd.flags |= tdMaxAckSet
		} else if seqAfter(ack, snd.maxack) {
			snd.maxack = ack
		}
	}
	if rcv.maxwin != 0 && seqAfter(end, snd.maxend) {
		rcv.maxwin += end - snd.maxend
	}
	if seqAfter(sack+win, rcv.maxend-1) {
		rcv.maxend = sack + win
		if win == 0 {
			rcv.maxend++
		}
	}
	if ack == rcv.end {
		rcv.flags &^= tdUnacked
	}
	if idx == tiAck { // retransmissions, for the timeout
		if int(t.lastDir) == d && t.lastSeq == seq && t.lastAck == ack && t.lastEnd == end && t.lastWin == p.win {
			if t.retrans < 255 {
				t.retrans++
			}
		} else {
			t.lastDir = uint8(d)
			t.lastSeq, t.lastAck, t.lastEnd, t.lastWin = seq, ack, end, p.win
			t.retrans = 0
		}
	}
	return tcpAccept
}
