package api

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	vswitch "github.com/hvnet/hvnet/switch"
)

// TestOpenAPIDocumentsEveryRoute: openapi.yaml parses and has every
// route the server serves, and no others.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	s := NewServer(vswitch.New(vswitch.Config{}), Options{})
	for _, r := range s.routeTable() {
		if !documented[r.pattern] {
			t.Errorf("route %q is not in openapi.yaml", r.pattern)
		}
		delete(documented, r.pattern)
	}
	for op := range documented {
		t.Errorf("openapi.yaml documents %q, which the server does not serve", op)
	}
}
