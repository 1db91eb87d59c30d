package topology

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a topology file.
type Error struct {
	File  string
	Line  int
	Field string // path of the field, as ports[1].pvid
	Msg   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// MaxFileSize bounds a topology file.
const MaxFileSize = 1 << 20

// Load reads and checks the topology file at path.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and checks a topology; name is used in error messages.
// The error joins every *Error found.
func Parse(name string, data []byte) (*Topology, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Line: 1, Field: "(file)", Msg: fmt.Sprintf("%d bytes: a topology file is at most %d", len(data), MaxFileSize)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t := &Topology{File: name}
	d := &decoder{file: name}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Line: 1, Field: "(file)", Msg: "empty topology"}
	}
	d.decode(doc.Content[0], reflect.ValueOf(t).Elem(), "", 0)
	if len(d.errs) == 0 {
		d.errs = check(t)
	}
	if len(d.errs) > 0 {
		errs := make([]error, len(d.errs))
		for i, e := range d.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return t, nil
}

type decoder struct {
	file string
	errs []*Error
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	if field == "" {
		field = "(top level)"
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

type scalarDecoder interface{ decodeScalar(string) error }

// nodeDecoder types decode a whole node themselves (Options).
type nodeDecoder interface{ decodeNode(*yaml.Node) error }

var (
	posType      = reflect.TypeOf(Pos{})
	durationType = reflect.TypeOf(time.Duration(0))
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields maps the YAML keys of struct type t to field index paths,
// inline structs' keys included.
func fields(t reflect.Type, idx []int, m map[string][]int) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opt, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || f.Type == posType {
			continue
		}
		at := append(append([]int(nil), idx...), i)
		if opt == "inline" {
			fields(f.Type, at, m)
			continue
		}
		m[name] = at
	}
}

// decode stores n into v strictly: unknown and duplicate keys, and values
// of the wrong kind, are errors with n's line.
// keyLine is the line of the key n is the value of (0 for list items and
// the document): a mapping's missing keys are reported there.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, keyLine int) {
	if n.Kind == yaml.AliasNode {
		// Following aliases lets a small file expand exponentially
		// ("billion laughs"): a topology names everything explicitly.
		d.fail(n, path, "YAML aliases (*%s) are not supported: write the value out", n.Value)
		return
	}
	if n.Tag == "!!null" && v.Kind() != reflect.Struct {
		return
	}
	if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
		if err := nd.decodeNode(n); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	if sd, ok := v.Addr().Interface().(scalarDecoder); ok {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a single value")
		} else if err := sd.decodeScalar(n.Value); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path, keyLine)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, path, keyLine)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), 0)
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a single value")
			return
		}
		if v.Type() == durationType {
			dur, err := time.ParseDuration(n.Value)
			if err != nil {
				d.fail(n, path, "%q is not a duration (as 300s or 5m)", n.Value)
				return
			}
			v.SetInt(int64(dur))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, "want %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, keyLine int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys to values")
		return
	}
	known := map[string][]int{}
	fields(v.Type(), nil, known)
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := strings.ReplaceAll(k.Value, "-", "_") // the command line's spelling
		if _, dup := lines[key]; dup {
			d.fail(k, join(path, k.Value), "key given twice (first on line %d)", lines[key])
			continue
		}
		lines[key] = k.Line
		idx, ok := known[key]
		if !ok {
			if n, ok := renamedKey(v.Type(), key); ok {
				d.fail(k, join(path, k.Value), "unknown key: it is now called %s", n)
				continue
			}
			names := make([]string, 0, len(known))
			for name := range known {
				names = append(names, name)
			}
			sort.Strings(names)
			d.fail(k, join(path, k.Value), "unknown key (known keys here: %s)", strings.Join(names, ", "))
			continue
		}
		d.decode(val, v.FieldByIndex(idx), join(path, key), k.Line)
	}
	if p, ok := v.Addr().Interface().(interface{ setPos(int, map[string]int) }); ok {
		line := n.Line
		if keyLine != 0 && n.Style&yaml.FlowStyle == 0 {
			line = keyLine
		}
		p.setPos(line, lines)
	}
}

// renamedKey is the one name, the command line's, of a key a mapping of
// type t took before hvnet had one vocabulary.
func renamedKey(t reflect.Type, key string) (string, bool) {
	if t == reflect.TypeFor[Limit]() {
		n, ok := map[string]string{"rate": "rate_bps", "burst": "burst_bytes", "pps": "rate_pps", "pps_burst": "burst_packets"}[key]
		return n, ok
	}
	n, ok := map[string]string{
		"pvid": "vlan", "allowed_vlans": "trunk", "native_vlan": "native", "interface": "if", "tx_mode": "tx",
		"command": "cmd", "socket_mode": "socket-mode (under options:)", "mode": "vlan_mode (mode is a vhost-user port's server or client)",
	}[key]
	return n, ok
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	}
	return k.String()
}
