// Package ipfix exports the switch's flows to collectors over IPFIX (RFC
// 7011) on UDP: an Exporter turns the switch's flow cache on
// (vswitch.Switch.EnableFlows), reports flows at their active and idle
// timeouts (Config), and sends the records, with their templates resent
// every TemplateRefresh (RFC 7011 §8.4), to each collector.
//
// # Records
//
// Three templates, by what the flow is (IANA Information Element numbers,
// RFC 7012):
//
//   - 256, IPv4: flowStartMilliseconds (152), flowEndMilliseconds (153),
//     packetDeltaCount (2), octetDeltaCount (1: the IP packets' octets),
//     layer2OctetDeltaCount (352: the whole frames', as the switch's
//     port counters count them), ingressInterface (10), egressInterface
//     (14), sourceMacAddress (56), destinationMacAddress (80), vlanId (58),
//     layer2SegmentId (351: 0x01 << 56 | VNI for a flow in or out of a
//     VXLAN port, else 0), sourceIPv4Address (8), destinationIPv4Address
//     (12), protocolIdentifier (4), sourceTransportPort (7),
//     destinationTransportPort (11), icmpTypeCodeIPv4 (32),
//     tcpControlBits (6, the flags of every segment OR'ed), flowEndReason
//     (136: 1 idle, 2 active timeout, 4 forced: export stopped or
//     reconfigured, a port removed).
//   - 257, IPv6: the same with sourceIPv6Address (27),
//     destinationIPv6Address (28) and icmpTypeCodeIPv6 (139).
//   - 258, not IP (ARP, LLDP, ...): the common fields, ethernetType (256)
//     and flowEndReason.
//
// Octet counts follow the Information Elements' definitions as Open
// vSwitch's exporter does (ofproto/ofproto-dpif-ipfix.c): octetDeltaCount
// is the octets after the Ethernet header and its VLAN tags,
// layer2OctetDeltaCount the frames'. A GSO frame (one TCP segment of up to
// 64 KiB handed over by a guest) counts as one packet, as it does in the
// switch's port counters.
//
// Interfaces: ingressInterface and egressInterface are the switch's port
// numbers (vswitch.PortHandle.IfIndex: 1, 2, ... in the order ports were
// added; hvnet ctl ports and the API show them); egressInterface 0 is a
// flooded frame (broadcast, multicast, an unknown destination), which left
// by every other port of its VLAN. Options template 261 maps each number
// to the port's name (scope ingressInterface, interfaceName 82), sent with
// the templates.
//
// Sampling: with Config.Sampling N > 1 each port counts one frame in N
// (systematic count-based, PSAMP RFC 5475 §5.1) and the records carry the
// sampled counts. Two options records tell collectors N so they scale:
// template 259, samplingInterval (34) = N scoped by the observation domain
// (what nfdump reads; deprecated by RFC 7270 for the PSAMP elements but
// still what most collectors read), and template 260, the PSAMP Selector
// Report (RFC 5476 §6.5.2): selectorId (302) 1, selectorAlgorithm (304) 1,
// samplingPacketInterval (305) 1, samplingPacketSpace (306) N-1.
//
// # Why not a library
//
// github.com/vmware/go-ipfix was the candidate. Its go.mod requires IBM's
// Kafka client (sarama), pion/dtls, Kubernetes' apimachinery and
// component-base, klog, cobra and testify, about sixty modules in all, for
// what here is a few hundred lines of encoding; its exporter builds each
// record from a list of InfoElementWithValue interfaces (an allocation per
// field per record); and the Go module proxy serving this project refuses
// it (403). The encoder here (encode.go) writes messages into one reused
// buffer: nothing is allocated per record.
package ipfix
