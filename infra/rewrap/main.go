// Command rewrap re-wraps every stored key's data key under the current
// wrapping key (KMS_KEY_ID or ENCRYPTION_KEY), reading old ones from
// ENCRYPTION_KEY_PREVIOUS / KMS. It prints one JSON summary line and exits
// non-zero if any row failed.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awsclient"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/store"
)

func main() {
	log := app.NewLogger()
	ctx := context.Background()
	fail := func(msg string, err error) {
		log.Error(msg, "err", err.Error())
		os.Exit(1)
	}
	cfg := app.ConfigFromEnv(app.Getenv)
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		fail("rewrap: start-up failed", err)
	}
	c := app.NewClients(awsCfg)
	v, err := app.NewVault(cfg, c)
	if err != nil {
		fail("rewrap: key encryption is not configured", err)
	}
	sum, err := keys.RewrapAll(ctx, store.New(c.DynamoDB, cfg.TablePrefix), v, log)
	_ = json.NewEncoder(os.Stdout).Encode(sum)
	if err != nil {
		fail("rewrap: pass failed", err)
	}
	if sum.Errors > 0 {
		os.Exit(1)
	}
}
