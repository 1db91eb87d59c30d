package conntrack

// Peek is Track without side effects, for tracing: the verdict Track
// would give p now, changing no entry, removing nothing, counting nothing.
// A TCP segment is judged against a copy of its connection's state.
func (z *Zone) Peek(p *Packet, now int64) Verdict {
	switch p.Kind {
	case KindTCP, KindUDP, KindICMPEcho, KindOther:
	case KindUntracked:
		return Untracked
	case KindFragment:
		if p.Key.Family == 4 && p.Key.Proto == protoTCP && p.FragOff == 1 {
			return Invalid
		}
		if v, ok := z.frags.lookup(z, p, now); ok {
			return v
		}
		return Invalid
	case KindICMPError:
		s, tag := z.shardOf(&p.Inner)
		s.mu.Lock()
		_, i, ok := s.find(&p.Inner, tag)
		live := ok && now < s.at(i).expires
		s.mu.Unlock()
		if live {
			return Related
		}
		return Invalid
	default:
		return Invalid
	}
	if p.Kind == KindTCP && !tcpValidFlags(p.Flags) {
		return Invalid
	}
	s, tag := z.shardOf(&p.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, i, ok := s.find(&p.Key, tag)
	if !ok || now >= s.at(i).expires {
		switch {
		case p.Kind == KindTCP && !tcpCanOpen(p.Flags), p.Kind == KindICMPEcho && p.EchoReply:
			return Invalid
		}
		return New
	}
	e := *s.at(i) // a copy: tcpPacket advances it
	if e.kind != p.Kind {
		return New
	}
	d := dirIndex(&e, p.Dir)
	if p.Kind == KindTCP {
		seg := p.tcpSeg()
		switch z.tcpPacket(&e, &seg, d, now) {
		case tcpInvalid:
			return Invalid
		case tcpReopen:
			return New
		}
		return passVerdict(d)
	}
	if p.Kind == KindICMPEcho && p.EchoReply != (d == 1) {
		return New
	}
	return passVerdict(d)
}
