// Command revalidator is the revalidator Lambda function (EventBridge
// schedule, rate(24 hours)): one pass re-validates every stored key
// (shared/revalidate).
//
// Outside Lambda (AWS_LAMBDA_RUNTIME_API unset) it performs one pass from
// the command line with the dev server's environment, prints the summary as
// one JSON line on stdout (logs go to stderr) and exits 0, or 1 when the
// pass failed.
//
// One pass at a time, across invocations and the command line: a pass holds
// a lease row in the main table (revalidate.Lease); a second one started
// meanwhile logs that and exits at once with an empty summary.
//
// Tuning: REVALIDATE_CONCURRENCY (default 100), REVALIDATE_KEY_TIMEOUT
// (default 15s).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/revalidate"
)

func main() {
	lambdaMode := os.Getenv("AWS_LAMBDA_RUNTIME_API") != ""
	var log *slog.Logger
	if lambdaMode {
		log = app.NewLogger()
	} else {
		// stdout carries only the summary line.
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	r, ledger, lease, err := newRunner(context.Background(), log)
	if err != nil {
		log.Error("start-up failed", "function", "revalidator", "err", err.Error())
		os.Exit(1)
	}
	// After the key pass, finish credit reservations that a killed chat
	// Lambda never finished (older than staleAfter, well above its timeout):
	// refunded, or charged the reserved amount when delivery was recorded.
	sweep := func(ctx context.Context) {
		n, err := ledger.ReleaseStale(ctx, staleAfter)
		if err != nil {
			log.Error("stale reservation sweep failed", "err", err.Error(), "finished", n)
			return
		}
		log.Info("stale reservations finished", "finished", n)
	}
	// pass is one key pass and sweep under the lease.
	pass := func(ctx context.Context) (revalidate.Summary, error) {
		var sum revalidate.Summary
		err := lease.Hold(ctx, func(ctx context.Context) error {
			var err error
			sum, err = r.Run(ctx)
			sweep(ctx)
			return err
		})
		if errors.Is(err, revalidate.ErrHeld) {
			log.Info("another revalidation pass is running; this one exits without checking keys")
			return sum, nil
		}
		return sum, err
	}
	if lambdaMode {
		lambda.Start(func(ctx context.Context, _ events.CloudWatchEvent) (revalidate.Summary, error) {
			// Stop early enough to log and return the summary before Lambda's
			// own deadline; keys not reached are checked by the next pass.
			if dl, ok := ctx.Deadline(); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, dl.Add(-15*time.Second))
				defer cancel()
			}
			return pass(ctx)
		})
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sum, err := pass(ctx)
	stop()
	line, merr := json.Marshal(sum)
	if merr != nil {
		log.Error("summary encode failed", "err", merr.Error())
		os.Exit(1)
	}
	fmt.Println(string(line))
	if err != nil {
		os.Exit(1)
	}
}

// staleAfter is how old an unfinished credit reservation must be before the
// sweep releases it: well above the chat function's 300 s timeout.
const staleAfter = 20 * time.Minute

// newRunner wires the runner and the credit ledger from the environment,
// through shared/app.
func newRunner(ctx context.Context, log *slog.Logger) (*revalidate.Runner, *credits.Ledger, *revalidate.Lease, error) {
	a, clients, err := app.FromEnv(ctx, log, app.WithoutVerifier()) // it serves no request: auth settings never stop it
	if err != nil {
		return nil, nil, nil, err
	}
	if a.VaultErr != nil {
		return nil, nil, nil, fmt.Errorf("stored keys cannot be opened: %w", a.VaultErr)
	}
	conc, err := intEnv("REVALIDATE_CONCURRENCY", revalidate.DefaultConcurrency)
	if err != nil {
		return nil, nil, nil, err
	}
	timeout := revalidate.DefaultPerKeyTimeout
	if s := app.Getenv("REVALIDATE_KEY_TIMEOUT"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 {
			return nil, nil, nil, errors.New("REVALIDATE_KEY_TIMEOUT must be a positive duration such as 15s")
		}
	}
	// The validator's own client keeps one idle connection per worker, so a
	// pass reuses connections to each provider instead of redialling.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 2*conc, conc
	validator := provider.NewValidator(&http.Client{Transport: tr},
		app.ConfigFromEnv(app.Getenv).Endpoints, provider.DefaultTimeout)
	return &revalidate.Runner{
		Store:         a.Store,
		Opener:        a.Vault,
		Validator:     validator,
		Recorder:      a.Keys,
		Concurrency:   conc,
		PerKeyTimeout: timeout,
		Log:           log,
	}, a.Ledger, &revalidate.Lease{DB: clients.DynamoDB, Table: a.Store.Table(), Name: "revalidator", Log: log}, nil
}

func intEnv(name string, def int) (int, error) {
	s := app.Getenv(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s must be a positive integer", name)
	}
	return n, nil
}
