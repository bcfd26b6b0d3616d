// Command export is the usage export Lambda function (GET /v1/usage/export)
// behind its own Function URL with InvokeMode RESPONSE_STREAM (aws-lambda-go
// lambdaurl): an export of any length streams to the client, which the HTTP
// API in front of the usage function cannot do (it buffers, 6 MB / 30 s).
package main

import (
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	lambdaurl.Start(app.MustHandler(app.FnExport))
}
