package keys_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/store"
)

func TestCandidatesOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := func(o store.Owner, id string, prio, age int, status string, models ...string) store.KeyRecord {
		k := store.KeyRecord{Provider: "openai", KeyID: id, Priority: prio, Status: status, Models: models,
			CreatedAt: t0.Add(time.Duration(-age) * time.Hour)}
		k.SetOwner(o)
		return k
	}
	me, org, proj := store.UserOwner("u"), store.OrgOwner("acme"), store.ProjectOwner("acme", "web")
	u := store.User{Set: store.NewKeySet(
		key(me, "u-late", 1, 1, "valid"),
		key(me, "u-old", 0, 9, "valid"),
		key(me, "u-new", 0, 1, "unchecked"),
		key(me, "u-bad", 0, 20, "invalid"),
	)}
	o := store.Org{Settings: store.OrgSettings{PersonalKeys: true},
		Keys:    store.NewKeySet(key(org, "o-1", 0, 1, "valid"), key(org, "o-claude", 0, 2, "valid", "claude-*")),
		Project: store.NewKeySet(key(proj, "p-4o", 0, 1, "valid", "gpt-4o", "o3*"), key(proj, "p-any", 2, 1, "valid")),
	}
	ids := func(ks []store.KeyRecord) string {
		out := []string{}
		for _, k := range ks {
			out = append(out, k.KeyID+"/"+k.Scope())
		}
		return fmt.Sprint(out)
	}
	for _, tc := range []struct {
		name  string
		org   *store.Org
		model string
		want  string
	}{
		{"personal only", nil, "gpt-4o", "[u-old/user u-new/user u-late/user]"},
		{"project, org, personal", &o, "gpt-4o", "[p-4o/project p-any/project o-1/org u-old/user u-new/user u-late/user]"},
		{"model filters", &o, "gpt-4o-mini", "[p-any/project o-1/org u-old/user u-new/user u-late/user]"},
		{"prefix filter", &o, "o3-mini", "[p-4o/project p-any/project o-1/org u-old/user u-new/user u-late/user]"},
	} {
		if got := ids(keys.Candidates(u, tc.org, "openai", tc.model)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	o.Settings.PersonalKeys = false
	if got := ids(keys.Candidates(u, &o, "openai", "gpt-4o")); got != "[p-4o/project p-any/project o-1/org]" {
		t.Errorf("org forbidding personal keys: %s", got)
	}
	if got := keys.Candidates(u, &o, "anthropic", "claude-3"); len(got) != 0 {
		t.Errorf("another provider: %v", got)
	}
	for _, m := range [][2]string{{"gpt-4o", "gpt-4o"}, {"gpt-4*", "gpt-4.1"}} {
		if !keys.ModelAllowed([]string{m[0]}, m[1]) {
			t.Errorf("%s should admit %s", m[0], m[1])
		}
	}
	for _, m := range [][2]string{{"gpt-4o", "gpt-4o-mini"}, {"gpt-4*", "gpt-3.5"}} {
		if keys.ModelAllowed([]string{m[0]}, m[1]) {
			t.Errorf("%s should not admit %s", m[0], m[1])
		}
	}
}
