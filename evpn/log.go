package evpn

import (
	"sort"

	"github.com/hashicorp/go-hclog"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger routes GoBGP's logs (its log.Logger interface) through
// hclog, with GoBGP's fields as key/value pairs.
type gobgpLogger struct {
	l hclog.Logger
	// rel maps the neighbor aliases GoBGP names back to the neighbors.
	rel *relay
}

var _ gobgplog.Logger = (*gobgpLogger)(nil)

// args flattens GoBGP's fields, sorted by name so that lines compare, with
// the neighbor (Key) under its real address.
func (g *gobgpLogger) args(f gobgplog.Fields) []any {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		v := f[k]
		if s, ok := v.(string); ok && k == "Key" && g.rel != nil {
			if a, ok := g.rel.realAddr(s); ok {
				v = a.String()
			}
		}
		out = append(out, k, v)
	}
	return out
}

// Panic logs and panics: GoBGP calls it on internal logic errors and does
// not expect to continue.
func (g *gobgpLogger) Panic(msg string, f gobgplog.Fields) {
	g.l.Error(msg, g.args(f)...)
	panic("gobgp: " + msg)
}

// Fatal logs at error level and panics rather than exiting the process:
// GoBGP calls it only where it cannot continue (a nil NLRI, a broken
// policy), and a panic at least leaves a stack trace to the embedding
// program.
func (g *gobgpLogger) Fatal(msg string, f gobgplog.Fields) {
	g.l.Error(msg, g.args(f)...)
	panic("gobgp: fatal: " + msg)
}

func (g *gobgpLogger) Error(msg string, f gobgplog.Fields) { g.l.Error(msg, g.args(f)...) }

func (g *gobgpLogger) Warn(msg string, f gobgplog.Fields) { g.l.Warn(msg, g.args(f)...) }

func (g *gobgpLogger) Info(msg string, f gobgplog.Fields) { g.l.Info(msg, g.args(f)...) }

func (g *gobgpLogger) Debug(msg string, f gobgplog.Fields) {
	if g.l.IsDebug() {
		g.l.Debug(msg, g.args(f)...)
	}
}

// SetLevel is ignored: the level is the hclog logger's, set by its owner.
func (g *gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel reports the hclog logger's level in GoBGP's terms; GoBGP skips
// building debug messages below DebugLevel.
func (g *gobgpLogger) GetLevel() gobgplog.LogLevel {
	switch {
	case g.l.IsTrace():
		return gobgplog.TraceLevel
	case g.l.IsDebug():
		return gobgplog.DebugLevel
	case g.l.IsInfo():
		return gobgplog.InfoLevel
	case g.l.IsWarn():
		return gobgplog.WarnLevel
	default:
		return gobgplog.ErrorLevel
	}
}
