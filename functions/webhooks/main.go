// Command webhooks is the webhooks Lambda function: it consumes the events
// queue (SQS, subscribed to the topic) and delivers each event to its
// owner's endpoints, answering with a partial batch response.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/webhooks"
)

func main() {
	log := app.NewLogger()
	a, c, err := app.FromEnv(context.Background(), log)
	if err == nil {
		var cons *webhooks.Consumer
		if cons, err = a.WebhookConsumer(app.ConfigFromEnv(app.Getenv), c, webhooks.Queues{}); err == nil {
			lambda.Start(cons.LambdaHandler)
			return
		}
	}
	log.Error("start-up failed", "function", "webhooks", "err", err.Error())
	os.Exit(1)
}
