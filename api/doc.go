// Package api is hvnet's control API: HTTP/JSON over a unix socket (mode
// 0600, as Firecracker's), served by the switch daemon and used by
// "hvnet ctl". openapi.yaml in this directory documents every endpoint.
//
// A daemon serves a *vswitch.Switch:
//
//	srv := api.NewServer(sw, api.Options{Logger: log, Ports: factory})
//	err := srv.Serve(ctx, "/run/hvnet.sock") // until ctx ends
//
// and a program talks to it with a Client:
//
//	c := api.NewClient("/run/hvnet.sock")
//	ports, err := c.Ports(ctx)
//
// Endpoints: ports (list, show with counters, add and remove through the
// daemon's PortFactory (a lab port boots a guest; a factory that is also
// a GuestReporter shows its state in port answers, one that is a
// DeviceReporter its backends' own counters as "device"), PATCH of VLAN, rate, MAC-limit, storm,
// bandwidth allocation (reservation_bps, shares, limit_bps) and class map
// (pcp_class, dscp_class) settings applied live with Switch.UpdatePort,
// reservations past a shaped egress's rate refused with 409), the queues
// of a shaped egress (GET /v1/ports/{name}/queues), ACLs of both directions with hit
// counters (PUT /v1/ports/{name}/acl), stateful security groups (PUT
// /v1/ports/{name}/security-group, inbound and outbound rules) and their
// connection tracking (GET and DELETE /v1/ports/{name}/conntrack, GET
// /v1/conntrack), trace, the filtering database (dump with
// filters, flush, static entries), mirroring (a port's traffic into a pcap
// file, or a live pcap stream on GET /v1/capture/{port}), the BGP EVPN
// routes and sessions of tunnel ports (GET /v1/evpn/routes and
// /v1/evpn/neighbors, from a factory that is an EVPNReporter) and Prometheus
// metrics on GET /metrics, read from Switch.Counters at scrape time.
//
// Every request is validated before anything changes: malformed JSON,
// unknown fields, unknown ports, VLANs outside 1..4094 and negative or
// absurd rates get a 4xx answer with an Error naming the field.
//
// The API's caller is trusted less than the daemon's operator: files and
// sockets it names stay under directories the daemon gives the server
// (Options.CaptureDir for file mirrors, Options.SocketDir for vhost-user
// sockets), reached without following a symlink, and an existing file is
// replaced only when asked. The server bounds what clients hold
// (Limits): connections at once, live captures, and read, write and idle
// timeouts, so a client sending half a header (slow loris) or never
// reading its answer loses its connection instead of taking the API's.
//
// The switch has one MirrorSink; the server installs a fan-out sink
// (Mirror) that hands each port's frames to the captures and files
// registered for it, and keeps the ports' MirrorIngress / MirrorEgress
// flags set exactly while someone listens. Frames are copied into pooled
// batches and queued without blocking: a slow reader loses frames (counted)
// instead of slowing the switch.
package api
