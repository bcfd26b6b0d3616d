package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/auth"
)

const secret = "0123456789abcdef0123456789abcdef"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func verify(t *testing.T, cfg auth.Config, tok string) auth.Principal {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return p
}

func TestRunFromEnv(t *testing.T) {
	var out, errb bytes.Buffer
	e := map[string]string{"AUTH_JWT_SECRET": secret, "AUTH_ISSUER": "byok", "AUTH_AUDIENCE": "api"}
	err := run([]string{"-user", "alice", "-role", "admin", "-ttl", "1h"}, env(e), filepath.Join(t.TempDir(), "none"), &out, &errb)
	if err != nil {
		t.Fatalf("run: %v (%s)", err, errb.String())
	}
	tok := out.String()
	if !strings.HasSuffix(tok, "\n") || strings.Count(tok, "\n") != 1 || strings.Count(tok, ".") != 2 {
		t.Fatalf("stdout = %q, want only the token", tok)
	}
	p := verify(t, auth.Config{HS256Secret: []byte(secret), Issuer: "byok", Audience: "api"}, strings.TrimSpace(tok))
	if p != (auth.Principal{UserID: "alice", Admin: true}) {
		t.Fatalf("principal = %+v", p)
	}
}

func TestRunFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "env")
	content := "# dev\nOTHER=x\nexport AUTH_JWT_SECRET=\"" + secret + "\"\nAUTH_ISSUER=file-iss\n"
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"-user", "bob"}, env(nil), f, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	p := verify(t, auth.Config{HS256Secret: []byte(secret), Issuer: "file-iss"}, strings.TrimSpace(out.String()))
	if p != (auth.Principal{UserID: "bob"}) {
		t.Fatalf("principal = %+v", p)
	}
}

func TestRunErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no user":      {nil, map[string]string{"AUTH_JWT_SECRET": secret}, "-user is required"},
		"no secret":    {[]string{"-user", "a"}, nil, "no secret"},
		"short secret": {[]string{"-user", "a"}, map[string]string{"AUTH_JWT_SECRET": "short"}, "at least 32"},
		"bad ttl":      {[]string{"-user", "a", "-ttl", "-1h"}, map[string]string{"AUTH_JWT_SECRET": secret}, "ttl"},
	} {
		var out bytes.Buffer
		err := run(tc.args, env(tc.env), missing, &out, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("%s: stdout = %q", name, out.String())
		}
	}
}

func TestRunOrgClaims(t *testing.T) {
	var out bytes.Buffer
	e := map[string]string{"AUTH_JWT_SECRET": secret}
	if err := run([]string{"-user", "olga", "-org", "acme", "-project", "web", "-org-role", "owner"}, env(e), filepath.Join(t.TempDir(), "none"), &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("run: %v", err)
	}
	p := verify(t, auth.Config{HS256Secret: []byte(secret)}, strings.TrimSpace(out.String()))
	if p != (auth.Principal{UserID: "olga", Org: "acme", Project: "web", OrgRole: auth.OrgOwner}) {
		t.Fatalf("principal = %+v", p)
	}
	for _, args := range [][]string{
		{"-user", "olga", "-project", "web"},
		{"-user", "olga", "-org-role", "owner"},
		{"-user", "olga", "-org", "a#b"},
	} {
		if err := run(args, env(e), filepath.Join(t.TempDir(), "none"), &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Fatalf("run %v succeeded", args)
		}
	}
}
