// Command usage is the usage Lambda function (HTTP API, payload 2.0).
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	log := app.NewLogger()
	a, _, err := app.FromEnv(context.Background(), log)
	if err != nil {
		log.Error("start-up failed", "function", "usage", "err", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(a.Handler(app.FnUsage)).ProxyWithContext)
}
