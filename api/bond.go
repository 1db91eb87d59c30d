package api

// Bonds: a bond port's members and their LACP state, and its own counters.

// BondCounters are a bond port's (bond.Stats): LACPDUs, failovers and
// what it dropped, by reason.
type BondCounters struct {
	LACPRx        uint64 `json:"bond_lacp_rx"`           // LACPDUs received
	LACPTx        uint64 `json:"bond_lacp_tx"`           // LACPDUs sent
	LACPBad       uint64 `json:"bond_lacp_bad"`          // malformed LACPDUs, dropped
	LACPQueueFull uint64 `json:"bond_lacp_queue_full"`   // LACPDUs dropped: the control loop was behind
	Failovers     uint64 `json:"bond_failovers"`         // times traffic moved to other members
	Announced     uint64 `json:"bond_announced"`         // RARP announcements of local MACs sent after failovers
	RxInactive    uint64 `json:"bond_rx_drop_inactive"`  // frames received on a member the bond does not take them from
	RxReflected   uint64 `json:"bond_rx_drop_reflected"` // balance-slb: the bond's own broadcasts flooded back
	TxNoMember    uint64 `json:"bond_tx_drop_no_member"` // frames not sent: no member carries traffic
	Rebalanced    uint64 `json:"bond_rebalanced"`        // balance-slb: source-MAC buckets moved between members
}

// BondReporter is implemented by a PortFactory whose ports may be
// bonds: port answers then show the bond's members.
type BondReporter interface {
	// Bond returns the named port's bond state, nil when it is not a bond.
	Bond(name string) *BondInfo
}

// BondInfo is a bond port's state.
type BondInfo struct {
	Mode      string       `json:"mode"`      // the mode in effect (LACP's fallback shows as such)
	Aggregate bool         `json:"aggregate"` // lacp: a partner aggregates with us
	Members   []BondMember `json:"members"`
}

// BondMember is one member of a bond.
type BondMember struct {
	Name     string      `json:"name"`
	Carrier  bool        `json:"carrier"`  // the link's carrier
	Usable   bool        `json:"usable"`   // carrier held through updelay/downdelay
	Carrying bool        `json:"carrying"` // frames are sent on it
	RxFrames uint64      `json:"rx_frames"`
	TxFrames uint64      `json:"tx_frames"`
	RxDrops  uint64      `json:"rx_drops"` // received where the bond does not take frames
	LACP     *LACPMember `json:"lacp,omitempty"`
}

// LACPMember is a member's LACP state (IEEE 802.1AX): its actor and
// partner information as LACPDUs carry them.
type LACPMember struct {
	ActorState     string `json:"actor_state"` // the state bits set: activity,short_timeout,aggregation,sync,collecting,distributing,defaulted,expired
	ActorKey       int    `json:"actor_key"`
	ActorPort      int    `json:"actor_port"`
	PartnerSystem  string `json:"partner_system"` // MAC; 00:00:00:00:00:00: no partner
	PartnerKey     int    `json:"partner_key"`
	PartnerPort    int    `json:"partner_port"`
	PartnerState   string `json:"partner_state"`
	ReceiveState   string `json:"receive_state"` // current, expired or defaulted
	Selected       bool   `json:"selected"`      // in the bond's aggregator
	RxPDUs         uint64 `json:"rx_pdus"`
	TxPDUs         uint64 `json:"tx_pdus"`
	PartnerExpired uint64 `json:"partner_expired"` // partner timeouts
	PartnerChanges uint64 `json:"partner_changes"` // times the partner's identity (system, key, port) changed
	FlapHolds      uint64 `json:"flap_holds"`      // times the member was held out for a flapping partner
	FlapHeld       bool   `json:"flap_held"`       // held out now: its partner changed 3 times in 10 s, until it is stable for 5 s
}

func (s *Server) bondInfo(name string) *BondInfo {
	if br, ok := s.ports.(BondReporter); ok {
		return br.Bond(name)
	}
	return nil
}
