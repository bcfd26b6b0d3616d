package auth

import (
	"context"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestOrgClaims(t *testing.T) {
	v := hsVerifier(t, Config{})
	tok := func(extra map[string]any) string {
		c := baseClaims("alice")
		for k, x := range extra {
			c[k] = x
		}
		return sign(t, jwt.SigningMethodHS256, testSecret, c, "")
	}
	for _, tc := range []struct {
		claims map[string]any
		want   Principal
	}{
		{nil, Principal{UserID: "alice"}},
		{map[string]any{"org": "acme"}, Principal{UserID: "alice", Org: "acme", OrgRole: OrgMember}},
		{map[string]any{"org": "acme", "org_role": "owner"}, Principal{UserID: "alice", Org: "acme", OrgRole: OrgOwner}},
		{map[string]any{"org": "acme", "org_role": "admin", "project": "web"}, Principal{UserID: "alice", Org: "acme", Project: "web", OrgRole: OrgAdminRole}},
		// An unknown or oddly shaped role is a member's.
		{map[string]any{"org": "acme", "org_role": "Admin"}, Principal{UserID: "alice", Org: "acme", OrgRole: OrgMember}},
		{map[string]any{"org": "acme", "org_role": []string{"admin"}}, Principal{UserID: "alice", Org: "acme", OrgRole: OrgMember}},
		// A role without an org means nothing.
		{map[string]any{"org_role": "owner"}, Principal{UserID: "alice"}},
	} {
		p, err := v.Verify(context.Background(), tok(tc.claims))
		if err != nil || p != tc.want {
			t.Fatalf("claims %v: p=%+v err=%v, want %+v", tc.claims, p, err, tc.want)
		}
	}
	for _, bad := range []map[string]any{
		{"org": ""}, {"org": 42}, {"org": "a#PROJECT#b"}, {"org": "a/b"}, {"org": "a b"}, {"org": "é"},
		{"org": strings.Repeat("x", MaxOrgIDLen+1)}, {"org": "acme", "project": "p#1"}, {"org": "acme", "project": true},
		{"project": "web"},
	} {
		_, err := v.Verify(context.Background(), tok(bad))
		wantUnauthorized(t, err, "")
	}
	p := Principal{UserID: "alice", Org: "acme", OrgRole: OrgAdminRole}
	if !p.OrgAdmin("acme") || p.OrgAdmin("other") || p.OrgAdmin("") {
		t.Fatal("OrgAdmin: admin of acme only")
	}
	if (Principal{UserID: "alice", Org: "acme", OrgRole: OrgMember}).OrgAdmin("acme") {
		t.Fatal("a member is no org admin")
	}
}
