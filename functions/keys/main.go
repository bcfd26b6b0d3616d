// Command keys is the keys Lambda function behind the HTTP API (payload 2.0).
package main

import (
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/synthstack/byok/shared/app"
)

func main() {
	lambda.Start(httpadapter.NewV2(app.MustHandler(app.FnKeys)).ProxyWithContext)
}
