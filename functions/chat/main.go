// Command chat is the chat Lambda function behind a Function URL with
// InvokeMode RESPONSE_STREAM (aws-lambda-go lambdaurl): responses stream to
// the client as they are written.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	log := app.NewLogger()
	a, _, err := app.FromEnv(context.Background(), log)
	if err != nil {
		log.Error("start-up failed", "function", "chat", "err", err.Error())
		os.Exit(1)
	}
	lambdaurl.Start(a.Handler(app.FnChat))
}
