package app_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/store"
)

// Rotation of ENCRYPTION_KEY: keys saved under the old key keep working with
// ENCRYPTION_KEY_PREVIOUS, the rewrap pass moves every row to the new key,
// and after the old key is removed every row still decrypts.
func TestEncryptionKeyRotationAndRewrap(t *testing.T) {
	oldKey, newKey := randomHex(t, 32), randomHex(t, 32)
	e := newEnv(t, func(v map[string]string) { v["ENCRYPTION_KEY"] = oldKey })
	e.fake.SetDefault(fakeprovider.OK())
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	for _, u := range users {
		e.setTier(u, "premium")
		for _, path := range []string{"/v1/keys/openai", "/v1/keys/anthropic"} {
			k := openAIKey(t)
			if path == "/v1/keys/anthropic" {
				k = anthropicKey(t)
			}
			if r := e.do("PUT", path, e.token(u, ""), map[string]string{"api_key": k}); r.Status != 200 {
				t.Fatalf("put: %d %s", r.Status, r.Body)
			}
		}
	}
	testAll := func(stage string) {
		t.Helper()
		for _, u := range users {
			for _, p := range []string{"openai", "anthropic"} {
				if r := e.do("POST", "/v1/keys/"+p+"/test", e.token(u, ""), nil); r.Status != 200 || r.json(t)["status"] != "valid" {
					t.Fatalf("%s: test %s/%s: %d %s", stage, u, p, r.Status, r.Body)
				}
			}
		}
	}

	// 1. New key current, old key previous: old rows still open.
	e.vars["ENCRYPTION_KEY"], e.vars["ENCRYPTION_KEY_PREVIOUS"] = newKey, oldKey
	e.restart()
	testAll("with previous key")

	// Without the previous key the old rows cannot be opened (fail closed, no provider call).
	e.vars["ENCRYPTION_KEY_PREVIOUS"] = ""
	e.restart()
	before := e.fake.TotalCalls()
	if r := e.do("POST", "/v1/keys/openai/test", e.token("u1", ""), nil); r.Status != 500 || r.errCode(t) != "internal" {
		t.Fatalf("old row without previous key: %d %s", r.Status, r.Body)
	}
	if e.fake.TotalCalls() != before {
		t.Fatal("provider called with an undecryptable key")
	}

	// 2. Rewrap with both keys configured.
	e.vars["ENCRYPTION_KEY_PREVIOUS"] = oldKey
	v, err := app.NewVault(app.ConfigFromEnv(func(k string) string { return e.vars[k] }), app.Clients{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(e.db, e.vars["TABLE_PREFIX"])
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	sum, err := keys.RewrapAll(context.Background(), st, v, log)
	if err != nil || sum.Scanned != 10 || sum.Rewrapped != 10 || sum.Errors != 0 {
		t.Fatalf("rewrap: %+v %v", sum, err)
	}
	// A second pass has nothing to do.
	if sum, err = keys.RewrapAll(context.Background(), st, v, log); err != nil || sum.Current != 10 || sum.Rewrapped != 0 {
		t.Fatalf("second rewrap: %+v %v", sum, err)
	}

	// 3. Old key removed: every row still decrypts.
	e.vars["ENCRYPTION_KEY_PREVIOUS"] = ""
	e.restart()
	testAll("after removing the old key")
}
