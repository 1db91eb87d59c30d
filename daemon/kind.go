package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/hvnet/hvnet/api"
	vswitch "github.com/hvnet/hvnet/switch"
)

// A Kind makes port backends of one kind: vhost-user sockets, AF_PACKET
// uplinks, lab guests. A kind is one package that calls Register in its
// init function; the daemon's surfaces (the --port flags and config file
// of "hvnet switch", "hvnet ctl add", POST /v1/ports and its "options")
// all reach it through the registry, by its name and its declared
// options, so adding a kind touches no other package.
type Kind interface {
	// Name is the kind's name on every surface: "vhost-user".
	Name() string
	// Summary is one line for help texts.
	Summary() string
	// Options declares the kind's own settings, beside the switch-port
	// settings every port has (CommonOptions, whose keys it must not
	// reuse: clients tell the two apart by key).
	Options() []Option
	// Parse checks a port's kind settings (only declared keys, required
	// ones present, repeated only where declared: Parse's caller checks
	// that) and returns what Start needs. port is the switch port's
	// configuration, for settings that follow it (a NIC's MTU); Start's
	// attach is what applies it.
	Parse(v Values, port vswitch.PortConfig) (Spec, error)
}

// LinkSpeeder is a Kind whose ports sit on a host interface that knows
// its speed: rate=link takes the capacity from it.
type LinkSpeeder interface {
	// LinkSpeed returns the speed of the port's link in bits per second,
	// or why it is not known.
	LinkSpeed(v Values) (int64, error)
}

// Option declares one of a kind's settings.
type Option struct {
	Key      string // as written on every surface: socket, if, queues
	Value    string // its form, for help and errors: PATH, 1..16, server|client
	Help     string
	Required bool
	Repeat   bool // may be given more than once
	// Socket marks a unix socket path: a port added through the API has
	// it confined to the daemon's run directory (a relative one is taken
	// under it), as the API's vhost-user sockets are.
	Socket bool
	// Rest marks a value that may hold the text surfaces' separators (a
	// script): in a --port spec or a config-file line it must come last
	// and takes the rest (SplitSpec).
	Rest bool
}

// Values are a port's kind settings: key → values in the order given
// (one unless the option repeats).
type Values map[string][]string

// Get returns key's value, "" when absent.
func (v Values) Get(key string) string {
	if vs := v[key]; len(vs) > 0 {
		return vs[len(vs)-1]
	}
	return ""
}

// Add appends a value for key.
func (v Values) Add(key, val string) { v[key] = append(v[key], val) }

// Int returns key's value as a number in lo..hi, 0 when absent; a value
// that is not one is an OptionError naming the key and the range.
func (v Values) Int(key string, lo, hi int) (int, error) {
	s := v.Get(key)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, Bad(key, s, fmt.Sprintf("is not a number in %d..%d", lo, hi))
	}
	return n, nil
}

// Spec is a parsed port of some kind, ready to start.
type Spec interface {
	// Claims names what the port uses that no other port of the daemon
	// may ("socket /run/hvnet/a.sock", "interface eth1"), checked before
	// Start.
	Claims() []string
	// Start makes the backend and attaches it to the switch by calling
	// attach once with its vswitch.Port (attach chooses the switch
	// configuration). If attach or anything after it fails, Start undoes
	// what it made. ctx is the request's: it bounds the start only.
	Start(ctx context.Context, h *Host, name string, attach vswitch.AttachFunc) (Backend, error)
}

// Backend is a running port backend.
type Backend interface {
	// Close stops the backend and waits until it has released
	// everything; the switch port may already be detached.
	Close() error
}

// Optional Backend methods.
type (
	// DeviceReporter backends report their own counters (GET /v1/ports,
	// the metrics). It must not wait on anything a port's start holds.
	DeviceReporter interface{ DeviceCounters() *api.DeviceCounters }
	// GuestReporter backends are a guest's NIC and report its state.
	GuestReporter interface{ Guest() *api.GuestInfo }
	// TunnelReporter backends are tunnels and report their state.
	TunnelReporter interface{ Tunnel() *api.TunnelInfo }
	// BondReporter backends are bonds and report their members.
	BondReporter interface{ Bond() *api.BondInfo }
	// Reconfigurer backends take some changes of their kind settings
	// live (a bond's members and mode): Reconfigure gets the new
	// settings, parsed by the kind, and reports whether it applied them;
	// false (or an error) and the daemon restarts the port instead.
	Reconfigurer interface {
		Reconfigure(Spec) (bool, error)
	}
	// EVPNReporter backends may run a BGP EVPN control plane: EVPN
	// returns it, nil when they run none.
	EVPNReporter interface{ EVPN() api.EVPNPort }
	// DetachFirst backends must leave the switch before Close (a guest
	// whose memory goes away with it must receive nothing meanwhile).
	DetachFirst interface{ DetachFirst() bool }
)

// Host is what the daemon gives the kinds: its life, its log, its switch
// and its guest images.
type Host struct {
	// Ctx is the daemon's life: backends serve until it ends.
	Ctx    context.Context
	Log    hclog.Logger
	Switch *vswitch.Switch
	// Images returns the kernel and initramfs lab guests boot.
	Images func(ctx context.Context) (kernel, initrd string, err error)
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]Kind{}
	aliases = map[string]string{}
)

// Register makes a kind known to every daemon in the process; alias
// names (the config file's "port" for vhost-user) may follow. It panics
// on a name taken already: that is a programming error.
func Register(k Kind, alias ...string) {
	for _, o := range k.Options() {
		if IsCommon(o.Key) {
			panic(fmt.Sprintf("daemon: port kind %q: option %q is every port's", k.Name(), o.Key))
		}
	}
	kindsMu.Lock()
	defer kindsMu.Unlock()
	for _, n := range append([]string{k.Name()}, alias...) {
		if _, ok := kinds[n]; ok {
			panic(fmt.Sprintf("daemon: port kind %q registered twice", n))
		}
		if _, ok := aliases[n]; ok {
			panic(fmt.Sprintf("daemon: port kind %q registered twice", n))
		}
	}
	kinds[k.Name()] = k
	for _, a := range alias {
		aliases[a] = k.Name()
	}
}

// Lookup returns the kind of a name or alias.
func Lookup(name string) (Kind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	if n, ok := aliases[name]; ok {
		name = n
	}
	k, ok := kinds[name]
	return k, ok
}

// Kinds returns the registered kinds' names, sorted.
func Kinds() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for n := range kinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// UnknownKindError is a kind name nobody registered.
type UnknownKindError struct{ Kind string }

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("kind %q: unknown (want %s)", e.Kind, strings.Join(Kinds(), ", "))
}

// lookupKind is Lookup with the error every surface shows.
func lookupKind(name string) (Kind, error) {
	if k, ok := Lookup(name); ok {
		return k, nil
	}
	return nil, &UnknownKindError{Kind: name}
}

// kindOption returns a kind's declared option of key.
func kindOption(k Kind, key string) (Option, bool) {
	i := slices.IndexFunc(k.Options(), func(o Option) bool { return o.Key == key })
	if i < 0 {
		return Option{}, false
	}
	return k.Options()[i], true
}

// checkValues checks values against k's declarations: only declared
// keys, required ones present, repeated only where declared.
func checkValues(k Kind, v Values) error {
	for _, key := range slices.Sorted(maps.Keys(v)) { // the first bad key in order, every time
		vals := v[key]
		o, ok := kindOption(k, key)
		if !ok {
			return unknownKey(key, unknownFor(k))
		}
		if len(vals) == 0 { // an empty list or null: no value at all
			return &OptionError{Key: key, Msg: "missing value (an empty list or null)"}
		}
		if len(vals) > 1 && !o.Repeat {
			return &OptionError{Key: key, Msg: "given more than once"}
		}
	}
	for _, o := range k.Options() {
		if o.Required && v.Get(o.Key) == "" {
			return &OptionError{Key: o.Key, Msg: fmt.Sprintf("missing (a %s port needs %s=%s)", k.Name(), o.Key, o.Value)}
		}
	}
	return nil
}

// unknownFor is the message for a key that neither k nor every port
// takes: the kind's own keys, and where the rest are listed.
func unknownFor(k Kind) string {
	var keys []string
	for _, o := range k.Options() {
		keys = append(keys, o.Key)
	}
	return fmt.Sprintf("unknown for kind %s (its keys: %s; and those every port takes: hvnet switch --kinds)",
		k.Name(), strings.Join(keys, ", "))
}

// OptionError is a bad value of one option (a kind's or a common one):
// every surface shows it as field KEY.
type OptionError struct {
	Key   string
	Value string // "" when the problem is not the value
	Msg   string
}

func (e *OptionError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("field %q: %q %s", e.Key, e.Value, e.Msg)
	}
	return fmt.Sprintf("field %q: %s", e.Key, e.Msg)
}

// Bad returns an OptionError for key's value v.
func Bad(key, v, msg string) error { return &OptionError{Key: key, Value: v, Msg: msg} }

// Help describes a kind's settings, one line per option, for usage texts.
func Help(k Kind) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", k.Name(), k.Summary())
	for _, o := range k.Options() {
		req := ""
		if o.Required {
			req = " (required)"
		}
		fmt.Fprintf(&b, "\t%s=%s%s: %s\n", o.Key, o.Value, req, o.Help)
	}
	return b.String()
}

// IsCommon says whether key is a switch-port setting every kind takes
// (CommonOptions) rather than a kind's own.
func IsCommon(key string) bool {
	for _, o := range CommonOptions() {
		if o.Key == key {
			return true
		}
	}
	return false
}
