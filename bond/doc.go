// Package bond is the switch's bond port: several AF_PACKET uplinks
// (members) that act as one switch port toward the physical network,
// for redundancy and bandwidth, as Open vSwitch bonds and Linux bonding
// do.
//
// This file set holds the Link Aggregation Control Protocol (IEEE
// 802.1AX-2014, formerly 802.3ad): the LACPDU codec (lacpdu.go) and the
// protocol machines of one aggregation (lacp.go), independent of how
// frames reach the wire.
package bond
