package topology

import (
	"errors"
	"strings"
	"time"

	"github.com/hvnet/hvnet/ipfix"
)

// FlowExport is the flow_export section: IPFIX (RFC 7011) export of the
// switch's flows to UDP collectors, under the keys hvnet switch's
// --flow-* flags and the API's /v1/flow-export use.
type FlowExport struct {
	Pos
	Enabled                *bool         `yaml:"enabled"`    // default true: the section turns it on
	Collectors             []string      `yaml:"collectors"` // HOST:PORT, UDP
	ActiveTimeout          time.Duration `yaml:"active_timeout"`
	IdleTimeout            time.Duration `yaml:"idle_timeout"`
	Sampling               int           `yaml:"sampling"` // one frame in N
	MaxFlows               int           `yaml:"max_flows"`
	MaxFlowsPerPort        int           `yaml:"max_flows_per_port"`
	TemplateRefresh        time.Duration `yaml:"template_refresh"`
	TemplateRefreshPackets int           `yaml:"template_refresh_packets"`
	ObservationDomain      uint32        `yaml:"observation_domain"`
}

// Config returns flow export's configuration (a nil section: off).
func (f *FlowExport) Config() ipfix.Config {
	if f == nil {
		return ipfix.Config{}
	}
	return ipfix.Config{Enabled: f.Enabled == nil || *f.Enabled, Collectors: f.Collectors, ActiveTimeout: f.ActiveTimeout,
		IdleTimeout: f.IdleTimeout, Sampling: f.Sampling, MaxFlows: f.MaxFlows, MaxFlowsPerPort: f.MaxFlowsPerPort, TemplateRefresh: f.TemplateRefresh,
		TemplateRefreshPackets: f.TemplateRefreshPackets, ObservationDomain: f.ObservationDomain}
}

// flowExport checks the flow_export section (collectors must resolve).
func (c *checker) flowExport(f *FlowExport) {
	if f == nil {
		return
	}
	err := f.Config().Validate()
	var fe *ipfix.FieldError
	if !errors.As(err, &fe) {
		return
	}
	key, _, _ := strings.Cut(fe.Field, "[")
	c.fail(f.LineOf(key), "flow_export."+fe.Field, "%q: %s", fe.Value, fe.Want)
}
