package daemon

import "strings"

// One vocabulary: every setting has one name on every surface. The text
// surfaces (--port, --uplink, hvnet lab --guest, config files, hvnet ctl
// add and set) write it as KEY=VALUE; the topology file and the API spell
// the same key with "_" for "-" (mac-limit is mac_limit). oldNames holds
// the names settings had before, so that a file or a request that still
// uses one is told the name to use instead of only "unknown".
var oldNames = map[string]string{
	"pvid":          "vlan",
	"allowed_vlans": "trunk",
	"allowed-vlans": "trunk",
	"vlans":         "trunk",
	"native_vlan":   "native",
	"native-vlan":   "native",
	"default_pcp":   "pcp",
	"macs":          "allowed-macs",
	"interface":     "if",
	"tx_mode":       "tx",
	"command":       "cmd",
	"script":        "cmd",
}

// Renamed returns the one name of a setting that key used to name, and
// whether it did.
func Renamed(key string) (string, bool) {
	n, ok := oldNames[key]
	return n, ok
}

// unknownKey is the error for a key nobody takes: the renamed key's new
// name, else msg.
func unknownKey(key, msg string) error {
	if n, ok := Renamed(key); ok {
		return &OptionError{Key: key, Msg: "is now called " + n}
	}
	return &OptionError{Key: key, Msg: msg}
}

// restKeys are the options that take the rest of a text spec (a script
// may hold commas and spaces): any kind's Option.Rest.
func restKeys() map[string]bool {
	m := map[string]bool{}
	for _, name := range Kinds() {
		k, _ := Lookup(name)
		for _, o := range k.Options() {
			if o.Rest {
				m[o.Key] = true
			}
		}
	}
	return m
}

// SplitSpec splits a text port spec into its KEY=VALUE fields at any of
// seps, except that a field whose key takes the rest of the spec
// (Option.Rest, such as a lab guest's cmd) runs to its end, separators
// and all. Empty fields are dropped.
func SplitSpec(spec, seps string) []string {
	rest := restKeys()
	var out []string
	s := strings.TrimLeft(spec, seps)
	for s != "" {
		key, _, _ := strings.Cut(s, "=")
		if rest[key] && !strings.ContainsAny(key, seps) {
			out = append(out, strings.TrimSpace(s))
			break
		}
		i := strings.IndexAny(s, seps)
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i])
		s = strings.TrimLeft(s[i:], seps)
	}
	return out
}
