package app_test

import (
	"testing"

	"github.com/synthstack/byok/shared/app"
)

func TestRoutesListed(t *testing.T) {
	r := app.Routes()
	if len(r["keys"]) != 25 || len(r["validate"]) != 6 || len(r["chat"]) < 2 || len(r["usage"]) < 1 || len(r["admin"]) < 5 {
		t.Fatalf("routes: %v", r)
	}
}
