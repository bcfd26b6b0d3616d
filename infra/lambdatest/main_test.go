// Package lambdatest checks the deployment side of byok: template.yaml
// against the code (functions, build targets, tables, routes, permissions),
// and every function's bootstrap under aws-lambda-rie.
package lambdatest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/synthstack/byok/shared/awstest"
)

// TestMain points AWS_ENDPOINT_URL at a real emulator (the one already set,
// or a moto_server started for this package) for the RIE smoke tests.
func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// repoRoot is the directory holding go.mod, template.yaml and the Makefile.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}
