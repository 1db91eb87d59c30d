package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// unknownField returns the dotted path of the first field in body that
// typ (a struct type) does not have, or "" if it finds none. The decoder's
// own error names only the innermost key.
func unknownField(body []byte, typ reflect.Type) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return findUnknown(v, typ, "")
}

func findUnknown(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := map[string]reflect.StructField{}
		collectFields(t, fields)
		for k, sub := range x {
			f, ok := fields[strings.ToLower(k)]
			p := k
			if path != "" {
				p = path + "." + k
			}
			if !ok {
				return p
			}
			if u := findUnknown(sub, f.Type, p); u != "" {
				return u
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return ""
		}
		for i, sub := range x {
			if u := findUnknown(sub, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); u != "" {
				return u
			}
		}
	}
	return ""
}

// collectFields maps the lower-cased JSON names of t's fields, embedded
// structs' included.
func collectFields(t reflect.Type, m map[string]reflect.StructField) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			collectFields(f.Type, m)
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[strings.ToLower(name)] = f
	}
}
