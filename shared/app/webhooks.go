package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/synthstack/byok/shared/vault"
	"github.com/synthstack/byok/shared/webhooks"
)

// newWebhookService wires the registration routes (served by the keys
// function): WEBHOOK_ALLOW_HOSTS lists hosts reachable over plain http.
func newWebhookService(cfg Config, c Clients, v *vault.Vault, log *slog.Logger) *webhooks.Service {
	guard := webhooks.NewGuard(webhooks.ParseAllowHosts(cfg.Getenv("WEBHOOK_ALLOW_HOSTS")))
	return &webhooks.Service{Store: webhooks.NewStore(c.DynamoDB, cfg.TablePrefix), Sealer: v, Guard: guard,
		Sender: webhooks.NewSender(guard), Log: log}
}

// WebhookConsumer wires the webhooks function's queue consumer:
// WEBHOOK_QUEUE_URL (the events queue, where retries are re-queued) and
// WEBHOOK_DLQ_URL (where exhausted deliveries are kept) are required.
func (a *App) WebhookConsumer(cfg Config, c Clients, q webhooks.Queues) (*webhooks.Consumer, error) {
	if q.URL == "" {
		q.URL = cfg.Getenv("WEBHOOK_QUEUE_URL")
	}
	if q.DLQURL == "" {
		q.DLQURL = cfg.Getenv("WEBHOOK_DLQ_URL")
	}
	if q.URL == "" || q.DLQURL == "" {
		return nil, errors.New("webhooks: set WEBHOOK_QUEUE_URL and WEBHOOK_DLQ_URL")
	}
	if a.VaultErr != nil {
		return nil, a.VaultErr
	}
	return &webhooks.Consumer{
		Store: a.Webhooks.Store, Opener: a.Vault, Sender: a.Webhooks.Sender, Queue: c.SQS,
		QueueURL: q.URL, DLQURL: q.DLQURL, Events: a.Events, Accounts: a.Store, Orgs: a.Store, Log: a.Log,
	}, nil
}

// WebhookQueueName is the events queue the dev bootstrap creates (and its
// dead-letter queue, with "-dlq").
const WebhookQueueName = "byok-webhooks"

// BootstrapWebhooks creates the events queue and its dead-letter queue and
// subscribes the queue to topicARN (DEV_BOOTSTRAP=1 only).
func BootstrapWebhooks(ctx context.Context, c Clients, tablePrefix, topicARN string) (webhooks.Queues, error) {
	return webhooks.EnsureQueues(ctx, c.SQS, c.SNS, topicARN, tablePrefix+WebhookQueueName)
}

// RunWebhookPollers runs n pollers of the consumer on the queue until ctx
// ends: the dev server's stand-in for the Lambda event source mapping.
func RunWebhookPollers(ctx context.Context, c Clients, cons *webhooks.Consumer, n int) {
	for range n {
		p := &webhooks.Poller{SQS: c.SQS, QueueURL: cons.QueueURL, Consumer: cons, Wait: 10, Log: cons.Log}
		go p.Run(ctx)
	}
}
