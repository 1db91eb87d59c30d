package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// EVPNRoutesQuery builds GET /v1/evpn/routes's query string; zero
// values are left out.
func EVPNRoutesQuery(port string, typ int, vni uint32, mac string) string {
	q := url.Values{}
	if port != "" {
		q.Set("port", port)
	}
	if typ != 0 {
		q.Set("type", strconv.Itoa(typ))
	}
	if vni != 0 {
		q.Set("vni", strconv.FormatUint(uint64(vni), 10))
	}
	if mac != "" {
		q.Set("mac", mac)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// EVPNRoutes lists the BGP EVPN routes of the tunnel ports (port "":
// all), filtered by type (2, 3; 0: both), VNI and MAC.
func (c *Client) EVPNRoutes(ctx context.Context, port string, typ int, vni uint32, mac string) ([]EVPNRoute, error) {
	var out []EVPNRoute
	return out, c.Do(ctx, http.MethodGet, "/v1/evpn/routes"+EVPNRoutesQuery(port, typ, vni, mac), nil, &out)
}

// EVPNNeighbors lists the BGP sessions of the tunnel ports' EVPN
// speakers (port "": all).
func (c *Client) EVPNNeighbors(ctx context.Context, port string) ([]EVPNNeighbor, error) {
	var out []EVPNNeighbor
	path := "/v1/evpn/neighbors"
	if port != "" {
		path += "?" + url.Values{"port": {port}}.Encode()
	}
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}
