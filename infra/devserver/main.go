// Command devserver serves every byok function's routes in one local process
// with the same handlers the Lambdas use (docs/api.md §15). It is configured only by
// environment; DEV_BOOTSTRAP=1 creates missing tables, the topic and the
// audio bucket first. CORS_ALLOWED_ORIGINS (comma-separated, or "*") makes
// it answer browsers' CORS preflights as the HTTP API and Function URLs do.
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awsclient"
	"github.com/synthstack/byok/shared/webhooks"
)

func main() {
	log := app.NewLogger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := app.ConfigFromEnv(app.Getenv)
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		log.Error("start-up failed", "err", err.Error())
		os.Exit(1)
	}
	clients := app.NewClients(awsCfg)
	if app.Getenv("DEV_BOOTSTRAP") == "1" {
		bctx, cancel := context.WithTimeout(ctx, time.Minute)
		arn, err := app.Bootstrap(bctx, clients, cfg.TablePrefix)
		cancel()
		if err != nil {
			log.Error("bootstrap failed", "err", err.Error())
			os.Exit(1)
		}
		if cfg.SNSTopicARN == "" {
			cfg.SNSTopicARN = arn
		}
		if cfg.AudioBucket == "" {
			cfg.AudioBucket = app.DevAudioBucket(cfg.TablePrefix)
		}
		bctx, cancel = context.WithTimeout(ctx, time.Minute)
		err = app.BootstrapAudio(bctx, clients, cfg.AudioBucket)
		cancel()
		if err != nil {
			log.Error("bootstrap failed", "err", err.Error())
			os.Exit(1)
		}
		log.Info("bootstrap done", "table_prefix", cfg.TablePrefix, "topic_arn", arn, "audio_bucket", cfg.AudioBucket)
	}
	a, err := app.New(ctx, cfg, clients, log)
	if err != nil {
		log.Error("start-up failed", "err", err.Error())
		os.Exit(1)
	}
	startWebhooks(ctx, a, cfg, clients)
	port := app.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	srv := &http.Server{
		Addr:              net.JoinHostPort(app.Getenv("HOST"), port),
		Handler:           corsPreflight(splitOrigins(app.Getenv("CORS_ALLOWED_ORIGINS")), a.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if srv.Addr == ":"+port {
		srv.Addr = "127.0.0.1:" + port
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("devserver listening", "addr", "http://"+srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve failed", "err", err.Error())
		os.Exit(1)
	}
}

// startWebhooks runs the webhooks function's consumer against the events
// queue (created by the bootstrap, or WEBHOOK_QUEUE_URL), so `make run`
// delivers webhooks as the Lambda would.
func startWebhooks(ctx context.Context, a *app.App, cfg app.Config, clients app.Clients) {
	var q webhooks.Queues
	if app.Getenv("DEV_BOOTSTRAP") == "1" && cfg.SNSTopicARN != "" {
		bctx, cancel := context.WithTimeout(ctx, time.Minute)
		var err error
		q, err = app.BootstrapWebhooks(bctx, clients, cfg.TablePrefix, cfg.SNSTopicARN)
		cancel()
		if err != nil {
			a.Log.Error("webhook queues not created; webhooks are not delivered", "err", err.Error())
			return
		}
	}
	cons, err := a.WebhookConsumer(cfg, clients, q)
	if err != nil {
		a.Log.Info("webhook delivery off", "reason", err.Error())
		return
	}
	app.RunWebhookPollers(ctx, clients, cons, 2)
	a.Log.Info("webhook consumer polling", "queue_url", cons.QueueURL)
}
