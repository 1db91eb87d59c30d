// Package agentcfg is the contract between the hvnet guest agent (the /init of
// every test guest, hvnet/images/agent) and the host that boots it.
//
// The host describes what the guest should do with a Cmdline, renders it with
// Cmdline.String and appends it to the kernel command line. The agent parses
// /proc/cmdline with Parse, does the work and prints two console lines the
// host scans for: a Start line first thing, and a Result line last:
//
//	HVNET-AGENT-START kernel=6.1.0-48-cloud-amd64 uptime=0.61 cpus=1
//	HVNET-RESULT {"status":0,"uptime":1.02}
//
// Parse them with ParseStart and ParseResult.
package agentcfg

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kernel command-line parameter names understood by the agent.
const (
	ParamModules = "hvnet.modules" // comma-separated modules or @groups, repeatable
	ParamIf      = "hvnet.if"      // NAME,ADDR/PREFIX|none[,mtu=N][,up|down], repeatable
	ParamCmd     = "hvnet.cmd"     // base64 of a shell script
	ParamCmdFile = "hvnet.cmdfile" // path of a script inside the initramfs
	ParamTimeout = "hvnet.timeout" // seconds (decimal allowed) before the script is killed
)

// Exit statuses the agent itself produces.
const (
	StatusTimeout    = 124 // the script ran past hvnet.timeout
	StatusAgentError = 125 // the agent failed before or around the script
)

// MaxCmdline is the x86 kernel's COMMAND_LINE_SIZE, including the terminating
// NUL: a longer command line is silently truncated by the boot protocol.
const MaxCmdline = 2048

// Groups are the module shorthands accepted in hvnet.modules as @name. Each
// expands to modules in load order; dependencies not listed are still loaded
// from modules.dep.
var Groups = map[string][]string{
	// virtio-net over virtio-pci; virtio_pci is not a dependency of
	// virtio_net, so both ends are listed.
	"virtio-net": {"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
		"virtio_pci", "failover", "net_failover", "virtio_net"},
	"kvm":  {"irqbypass", "kvm", "kvm_amd"},
	"vlan": {"8021q"},
	"net":  {"tun", "veth", "bridge", "bonding"},
}

var moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ExpandModules replaces @group entries with their modules and drops
// duplicates, keeping the first occurrence.
func ExpandModules(mods []string) ([]string, error) {
	var out []string
	add := func(m string) {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	for _, m := range mods {
		if g, ok := strings.CutPrefix(m, "@"); ok {
			ms, ok := Groups[g]
			if !ok {
				return nil, fmt.Errorf("%s: unknown module group %q", ParamModules, m)
			}
			for _, m := range ms {
				add(m)
			}
			continue
		}
		if !moduleName.MatchString(m) {
			return nil, fmt.Errorf("%s: bad module name %q", ParamModules, m)
		}
		add(m)
	}
	return out, nil
}

// Iface is one hvnet.if: an interface the agent configures before the
// script runs.
type Iface struct {
	// Name is the interface name. "PARENT.VID" (e.g. eth0.10) asks for an
	// IEEE 802.1Q subinterface with that VLAN ID on PARENT; the agent
	// creates it and loads 8021q.
	Name string
	// Addr is the address with its prefix length; the zero Prefix means
	// link only ("none" on the command line).
	Addr netip.Prefix
	// MTU, if non-zero, is set before the link goes up.
	MTU int
	// Down leaves the link down (the default is to bring it up).
	Down bool
}

var ifName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// VLAN splits a PARENT.VID name. ok is false for a plain interface.
func (i Iface) VLAN() (parent string, vid int, ok bool) {
	p, v, found := strings.Cut(i.Name, ".")
	if !found {
		return "", 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return "", 0, false
	}
	return p, n, true
}

func (i Iface) validate() error {
	if !ifName.MatchString(i.Name) {
		return fmt.Errorf("%s: bad interface name %q (1-15 of [A-Za-z0-9_.-])", ParamIf, i.Name)
	}
	if strings.Contains(i.Name, ".") {
		p, vid, ok := i.VLAN()
		if !ok || p == "" || strings.Contains(p, ".") || vid < 1 || vid > 4094 {
			return fmt.Errorf("%s: bad VLAN interface %q (want PARENT.VID, VID 1-4094)", ParamIf, i.Name)
		}
	}
	if i.MTU < 0 || i.MTU > 65535 {
		return fmt.Errorf("%s: %s: bad mtu %d", ParamIf, i.Name, i.MTU)
	}
	return nil
}

// String renders the hvnet.if value (without the "hvnet.if=").
func (i Iface) String() string {
	addr := "none"
	if i.Addr.IsValid() {
		addr = i.Addr.String()
	}
	s := i.Name + "," + addr
	if i.MTU != 0 {
		s += ",mtu=" + strconv.Itoa(i.MTU)
	}
	if i.Down {
		s += ",down"
	}
	return s
}

// ParseIface parses a hvnet.if value: NAME,ADDR/PREFIX|none[,mtu=N][,up|down].
func ParseIface(s string) (Iface, error) {
	f := strings.Split(s, ",")
	if len(f) < 2 {
		return Iface{}, fmt.Errorf("%s=%s: want NAME,ADDR/PREFIX|none[,mtu=N][,up|down]", ParamIf, s)
	}
	i := Iface{Name: f[0]}
	if f[1] != "none" {
		p, err := netip.ParsePrefix(f[1])
		if err != nil {
			return Iface{}, fmt.Errorf("%s=%s: address: %w", ParamIf, s, err)
		}
		i.Addr = p
	}
	for _, o := range f[2:] {
		switch {
		case o == "up":
			i.Down = false
		case o == "down":
			i.Down = true
		case strings.HasPrefix(o, "mtu="):
			n, err := strconv.Atoi(o[len("mtu="):])
			if err != nil || n <= 0 {
				return Iface{}, fmt.Errorf("%s=%s: bad mtu %q", ParamIf, s, o)
			}
			i.MTU = n
		default:
			return Iface{}, fmt.Errorf("%s=%s: unknown option %q", ParamIf, s, o)
		}
	}
	if err := i.validate(); err != nil {
		return Iface{}, err
	}
	return i, nil
}

// Cmdline is what the agent is asked to do. The zero value runs an
// interactive shell on the console.
type Cmdline struct {
	Modules    []string      // modules or @groups to load, in order
	Ifaces     []Iface       // interfaces to configure, in order
	Script     string        // shell script to run (hvnet.cmd)
	ScriptFile string        // or: path of a script in the initramfs (hvnet.cmdfile)
	Timeout    time.Duration // kill the script after this long (0: never)
}

// Validate reports whether c can be rendered and parsed back.
func (c Cmdline) Validate() error {
	if c.Script != "" && c.ScriptFile != "" {
		return fmt.Errorf("%s and %s are exclusive", ParamCmd, ParamCmdFile)
	}
	if strings.ContainsAny(c.ScriptFile, " \t\n\"") {
		return fmt.Errorf("%s: path %q contains a space or quote", ParamCmdFile, c.ScriptFile)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%s: negative timeout %v", ParamTimeout, c.Timeout)
	}
	if _, err := ExpandModules(c.Modules); err != nil {
		return err
	}
	for _, i := range c.Ifaces {
		if err := i.validate(); err != nil {
			return err
		}
	}
	if n := len(c.String()); n >= MaxCmdline {
		return fmt.Errorf("agent parameters are %d bytes; the kernel command line holds %d in all", n, MaxCmdline-1)
	}
	return nil
}

// String renders the agent's parameters, space separated, to append to the
// kernel command line (which also needs console=ttyS0 and the like). The
// script is encoded with unpadded URL-safe base64.
func (c Cmdline) String() string {
	var p []string
	if len(c.Modules) > 0 {
		p = append(p, ParamModules+"="+strings.Join(c.Modules, ","))
	}
	for _, i := range c.Ifaces {
		p = append(p, ParamIf+"="+i.String())
	}
	if c.Script != "" {
		p = append(p, ParamCmd+"="+base64.RawURLEncoding.EncodeToString([]byte(c.Script)))
	}
	if c.ScriptFile != "" {
		p = append(p, ParamCmdFile+"="+c.ScriptFile)
	}
	if c.Timeout > 0 {
		p = append(p, ParamTimeout+"="+strconv.FormatFloat(c.Timeout.Seconds(), 'f', -1, 64))
	}
	return strings.Join(p, " ")
}

// Fields splits a kernel command line into parameters the way the kernel
// does: on white space, except inside double quotes, which are removed.
func Fields(cmdline string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range cmdline {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// Parse reads the hvnet.* parameters of a whole kernel command line (the
// contents of /proc/cmdline); other parameters are ignored. Modules are
// returned as written (see ExpandModules), after checking.
func Parse(cmdline string) (Cmdline, error) {
	var c Cmdline
	var haveCmd bool
	for _, f := range Fields(cmdline) {
		if f == "--" {
			break // the rest belongs to init's argv
		}
		key, val, _ := strings.Cut(f, "=")
		if !strings.HasPrefix(key, "hvnet.") {
			continue
		}
		switch key {
		case ParamModules:
			for _, m := range strings.Split(val, ",") {
				if m == "" {
					continue
				}
				c.Modules = append(c.Modules, m)
			}
		case ParamIf:
			i, err := ParseIface(val)
			if err != nil {
				return Cmdline{}, err
			}
			c.Ifaces = append(c.Ifaces, i)
		case ParamCmd:
			if haveCmd {
				return Cmdline{}, fmt.Errorf("%s given twice", ParamCmd)
			}
			haveCmd = true
			b, err := DecodeBase64(val)
			if err != nil {
				return Cmdline{}, fmt.Errorf("%s: %w", ParamCmd, err)
			}
			c.Script = string(b)
		case ParamCmdFile:
			if c.ScriptFile != "" {
				return Cmdline{}, fmt.Errorf("%s given twice", ParamCmdFile)
			}
			if val == "" {
				return Cmdline{}, fmt.Errorf("%s: empty path", ParamCmdFile)
			}
			c.ScriptFile = val
		case ParamTimeout:
			s, err := strconv.ParseFloat(val, 64)
			if err != nil || s <= 0 || s > 1e6 {
				return Cmdline{}, fmt.Errorf("%s=%s: want positive seconds", ParamTimeout, val)
			}
			c.Timeout = time.Duration(s * float64(time.Second))
		default:
			return Cmdline{}, fmt.Errorf("unknown parameter %s", key)
		}
	}
	if haveCmd && c.ScriptFile != "" {
		return Cmdline{}, fmt.Errorf("%s and %s are exclusive", ParamCmd, ParamCmdFile)
	}
	if haveCmd && c.Script == "" {
		return Cmdline{}, fmt.Errorf("%s: empty script", ParamCmd)
	}
	if _, err := ExpandModules(c.Modules); err != nil {
		return Cmdline{}, err
	}
	return c, nil
}

// DecodeBase64 accepts standard or URL-safe base64, padded or not.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64 (std or URL alphabet): " + err.Error())
	}
	return b, nil
}
