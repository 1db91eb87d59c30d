package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
)

// ErrNotRunning says that nothing answers on the API socket.
var ErrNotRunning = errors.New("daemon not running")

// ErrNoAccess says that the API socket refused this user.
var ErrNoAccess = errors.New("no access to the daemon")

// Client talks to a Server over its unix socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon serving socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

// CloseIdleConnections closes the client's kept-alive connections (each
// holds one of the server's Limits.MaxConns while it is open).
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Stream sends a request and returns the response if it is a success;
// the caller closes its body. Failures are *Error (from the server) or
// wrap ErrNotRunning when the socket is missing or refuses connections.
func (c *Client) Stream(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hvnet"+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNotRunning, c.Socket)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w: permission denied on %s: run as root, or as a member of the socket's group "+
				"if the daemon gives it one (hvnet switch --api-group GROUP --api-mode 0660)", ErrNoAccess, c.Socket)
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return nil, e
	}
	return resp, nil
}

// Raw sends a request and returns the response body.
func (c *Client) Raw(ctx context.Context, method, path string, in any) ([]byte, error) {
	resp, err := c.Stream(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return b, nil
}

// Do sends a request and decodes the JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	b, err := c.Raw(ctx, method, path, in)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Ports lists the ports.
func (c *Client) Ports(ctx context.Context) ([]Port, error) {
	var out []Port
	return out, c.Do(ctx, http.MethodGet, "/v1/ports", nil, &out)
}

// Port shows one port.
func (c *Client) Port(ctx context.Context, name string) (Port, error) {
	var out Port
	return out, c.Do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(name), nil, &out)
}

// PatchPort changes a port's settings live.
func (c *Client) PatchPort(ctx context.Context, name string, p PortPatch) (Port, error) {
	var out Port
	return out, c.Do(ctx, http.MethodPatch, "/v1/ports/"+url.PathEscape(name), p, &out)
}

// AddPort asks the daemon for a new port.
func (c *Client) AddPort(ctx context.Context, spec PortSpec) (Port, error) {
	var out Port
	return out, c.Do(ctx, http.MethodPost, "/v1/ports", spec, &out)
}

// DeletePort removes a port.
func (c *Client) DeletePort(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(name), nil, nil)
}

// FDBQuery builds the query string of the FDB endpoints; zero values are
// left out.
func FDBQuery(port string, vlan int, mac string) string {
	q := url.Values{}
	if port != "" {
		q.Set("port", port)
	}
	if vlan != 0 {
		q.Set("vlan", strconv.Itoa(vlan))
	}
	if mac != "" {
		q.Set("mac", mac)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// FDB dumps the filtering database, filtered.
func (c *Client) FDB(ctx context.Context, port string, vlan int, mac string) ([]FDBEntry, error) {
	var out []FDBEntry
	return out, c.Do(ctx, http.MethodGet, "/v1/fdb"+FDBQuery(port, vlan, mac), nil, &out)
}

// FlushFDB removes dynamic entries of port ("" all) in vlan (0 all).
func (c *Client) FlushFDB(ctx context.Context, port string, vlan int) (int, error) {
	var out Flushed
	return out.Flushed, c.Do(ctx, http.MethodDelete, "/v1/fdb"+FDBQuery(port, vlan, ""), nil, &out)
}

// AddStatic installs a static FDB entry.
func (c *Client) AddStatic(ctx context.Context, e StaticEntry) error {
	return c.Do(ctx, http.MethodPost, "/v1/fdb", e, nil)
}

// DeleteStatic removes a static FDB entry.
func (c *Client) DeleteStatic(ctx context.Context, vlan int, mac string) error {
	return c.Do(ctx, http.MethodDelete, fmt.Sprintf("/v1/fdb/%d/%s", vlan, url.PathEscape(mac)), nil, nil)
}

// StartMirror mirrors a port into a pcap file.
func (c *Client) StartMirror(ctx context.Context, m MirrorSpec) error {
	return c.Do(ctx, http.MethodPost, "/v1/mirrors", m, nil)
}

// StopMirror stops a port's file mirror.
func (c *Client) StopMirror(ctx context.Context, port string) (MirrorInfo, error) {
	var out MirrorInfo
	return out, c.Do(ctx, http.MethodDelete, "/v1/mirrors/"+url.PathEscape(port), nil, &out)
}

// Capture opens a live pcap stream of port's traffic in direction
// (ingress, egress, both or ""), ending after count frames (0: when ctx
// ends). The caller closes it.
func (c *Client) Capture(ctx context.Context, port, direction string, count int) (io.ReadCloser, error) {
	q := url.Values{}
	if direction != "" {
		q.Set("direction", direction)
	}
	if count > 0 {
		q.Set("count", strconv.Itoa(count))
	}
	path := "/v1/capture/" + url.PathEscape(port)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.Stream(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	b, err := c.Raw(ctx, http.MethodGet, "/metrics", nil)
	return string(b), err
}

// ACL returns a port's ingress ACL with its hit counters.
func (c *Client) ACL(ctx context.Context, port string) (ACL, error) {
	var out ACL
	return out, c.Do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(port)+"/acl", nil, &out)
}

// SetACL replaces a port's ingress ACL live and returns it as set.
func (c *Client) SetACL(ctx context.Context, port string, a ACL) (ACL, error) {
	var out ACL
	return out, c.Do(ctx, http.MethodPut, "/v1/ports/"+url.PathEscape(port)+"/acl", a, &out)
}

// Trace asks what the switch would do with a frame.
func (c *Client) Trace(ctx context.Context, q TraceRequest) (TraceResult, error) {
	var out TraceResult
	return out, c.Do(ctx, http.MethodPost, "/v1/trace", q, &out)
}

// Queues returns the queues of a port's shaped egress (none when it is
// not shaped).
func (c *Client) Queues(ctx context.Context, port string) ([]Queue, error) {
	var out []Queue
	return out, c.Do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(port)+"/queues", nil, &out)
}

// SecurityGroup returns a port's security group (an *Error with status
// 404 when it has none).
func (c *Client) SecurityGroup(ctx context.Context, port string) (SecurityGroup, error) {
	var out SecurityGroup
	return out, c.Do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(port)+"/security-group", nil, &out)
}

// SetSecurityGroup gives a port a security group, or replaces its rules,
// live; flush forgets its tracked connections too. It returns the group
// as set.
func (c *Client) SetSecurityGroup(ctx context.Context, port string, g SecurityGroup, flush bool) (SecurityGroup, error) {
	var out SecurityGroup
	path := "/v1/ports/" + url.PathEscape(port) + "/security-group"
	if flush {
		path += "?flush=true"
	}
	return out, c.Do(ctx, http.MethodPut, path, g, &out)
}

// DeleteSecurityGroup removes a port's security group and its tracked
// connections.
func (c *Client) DeleteSecurityGroup(ctx context.Context, port string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(port)+"/security-group", nil, nil)
}

// PortConntrack lists a port's tracked connections, at most limit (0:
// the server's default) of them, with its counters.
func (c *Client) PortConntrack(ctx context.Context, port string, limit int) (PortConntrack, error) {
	var out PortConntrack
	path := "/v1/ports/" + url.PathEscape(port) + "/conntrack"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

// FlushConntrack forgets a port's tracked connections and returns how
// many there were.
func (c *Client) FlushConntrack(ctx context.Context, port string) (int, error) {
	var out Flushed
	return out.Flushed, c.Do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(port)+"/conntrack", nil, &out)
}

// Conntrack sums up every port's connection tracking.
func (c *Client) Conntrack(ctx context.Context) (ConntrackSummary, error) {
	var out ConntrackSummary
	return out, c.Do(ctx, http.MethodGet, "/v1/conntrack", nil, &out)
}

// FlowExport is GET /v1/flow-export.
func (c *Client) FlowExport(ctx context.Context) (FlowExportStatus, error) {
	var out FlowExportStatus
	return out, c.Do(ctx, http.MethodGet, "/v1/flow-export", nil, &out)
}

// SetFlowExport is PUT /v1/flow-export.
func (c *Client) SetFlowExport(ctx context.Context, f FlowExport) (FlowExportStatus, error) {
	var out FlowExportStatus
	return out, c.Do(ctx, http.MethodPut, "/v1/flow-export", f, &out)
}

// Flows is GET /v1/flows: at most limit flows (0: the default), by sort
// ("bytes", "packets"; "": bytes).
func (c *Client) Flows(ctx context.Context, limit int, sort string) (Flows, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if sort != "" {
		q.Set("sort", sort)
	}
	path := "/v1/flows"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out Flows
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}
