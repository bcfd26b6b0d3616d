package app_test

import (
	"testing"

	"github.com/synthstack/byok/shared/app"
)

func TestRoutesListed(t *testing.T) {
	r := app.Routes()
	// keys: 20 key and org routes, 12 webhooks routes (6 for a user, 6 for an
	// org), 5 of the settings page.
	if len(r["keys"]) != 37 || len(r["validate"]) != 6 || len(r["chat"]) < 2 || len(r["usage"]) < 1 || len(r["admin"]) < 5 {
		t.Fatalf("routes: %v", r)
	}
}
