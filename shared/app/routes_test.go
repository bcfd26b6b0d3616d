package app_test

import (
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/app"
)

func TestRoutesListed(t *testing.T) {
	r := app.Routes()
	if len(apiRoutes(r["keys"])) != 3 || len(r["validate"]) != 1 || len(r["chat"]) < 2 || len(r["usage"]) < 1 || len(r["admin"]) < 5 {
		t.Fatalf("routes: %v", r)
	}
}

// apiRoutes drops the settings page's routes (shared/page), keeping /v1/.
func apiRoutes(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		if strings.Contains(p, " /v1/") {
			out = append(out, p)
		}
	}
	return out
}
