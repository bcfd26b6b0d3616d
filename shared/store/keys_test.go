package store_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/store"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func newStore(t *testing.T) *store.Store {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t))
	prefix := awstest.Prefix(t)
	if err := store.EnsureTables(context.Background(), db, prefix); err != nil {
		t.Fatal(err)
	}
	return store.New(db, prefix)
}

// Two adds that read the same key-set version: only the first is stored,
// so concurrent adds can never pass the 10-key limit together.
func TestAddKeyIsConditionalOnTheVersionRead(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	for _, owner := range []store.Owner{store.UserOwner("u1"), store.OrgOwner("acme"), store.ProjectOwner("acme", "web")} {
		set, err := st.GetKeySet(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		v := set.Version("openai")
		mk := func(id string, prio int) store.KeyRecord {
			k := store.KeyRecord{Provider: "openai", KeyID: id, Ciphertext: []byte{1}, Status: "valid", Priority: prio, CreatedAt: time.Now()}
			k.SetOwner(owner)
			return k
		}
		if err := st.AddKey(ctx, mk("a", 1), v); err != nil {
			t.Fatalf("%+v: first add: %v", owner, err)
		}
		if err := st.AddKey(ctx, mk("b", 0), v); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%+v: second add with a stale version: %v, want ErrConflict", owner, err)
		}
		set, err = st.GetKeySet(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddKey(ctx, mk("b", 0), set.Version("openai")); err != nil {
			t.Fatalf("%+v: add after re-read: %v", owner, err)
		}
		set, _ = st.GetKeySet(ctx, owner)
		ks := set.Keys["openai"]
		if len(ks) != 2 || ks[0].KeyID != "b" || ks[1].KeyID != "a" || ks[0].Scope() != owner.Scope || ks[0].Primary {
			t.Fatalf("%+v: keys %+v", owner, ks)
		}
	}
	// Scopes never see each other's rows.
	o, err := st.GetOrg(ctx, "acme", "")
	if err != nil || len(o.Keys.Keys["openai"]) != 2 || len(o.Project.Keys) != 0 || !o.Settings.PersonalKeys {
		t.Fatalf("org read: %+v %v", o, err)
	}
	o, err = st.GetOrg(ctx, "acme", "other")
	if err != nil || len(o.Project.Keys) != 0 {
		t.Fatalf("another project: %+v %v", o, err)
	}
	u, err := st.GetUser(ctx, "acme")
	if err != nil || len(u.Set.Keys) != 0 {
		t.Fatalf("a user named like the org: %+v %v", u, err)
	}
}
