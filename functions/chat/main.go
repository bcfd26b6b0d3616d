// Command chat is the chat Lambda function behind a Function URL with
// InvokeMode RESPONSE_STREAM (aws-lambda-go lambdaurl): responses stream to
// the client as they are written. A request is ended a margin before the
// invocation's deadline, so a stream that would outlive the function is cut
// and settled by the handler instead of killed with it.
package main

import (
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	lambdaurl.Start(app.EndBeforeDeadline(app.MustHandler(app.FnChat), app.DefaultDeadlineMargin))
}
