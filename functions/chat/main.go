// Command chat is the chat Lambda function behind a Function URL with
// InvokeMode RESPONSE_STREAM (aws-lambda-go lambdaurl): responses stream to
// the client as they are written.
package main

import (
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	lambdaurl.Start(app.MustHandler(app.FnChat))
}
