package azure_test

import (
	"net/http"
	"testing"

	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/schema"
)

// The live check with deployments is a 1-token chat call on one of them. A
// 400 to it means Azure took the key and found the deployment, then refused
// the probe itself (an embeddings deployment, a reasoning model that wants
// max_completion_tokens): the key is valid, not unchecked for ever.
func TestClassifyValidationProbeRefused(t *testing.T) {
	a := azure.Adapter{}
	h := http.Header{}
	for _, body := range []string{
		`{"error":{"code":"OperationNotSupported","message":"The chatCompletion operation does not work with the specified model, text-embedding-3-small."}}`,
		`{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}`,
	} {
		if v := a.ClassifyValidation(400, h, []byte(body)); v.Status != schema.StatusValid {
			t.Errorf("400 %s: %+v, want valid", body, v)
		}
	}
	if v := a.ClassifyValidation(401, h, []byte(`{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}`)); v.Status != schema.StatusInvalid || v.Reason != schema.ReasonUnauthorized {
		t.Errorf("401: %+v", v)
	}
	if v := a.ClassifyValidation(404, h, []byte(`{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}`)); v.Status != schema.StatusInvalid || v.Reason != schema.ReasonDeploymentNotFound {
		t.Errorf("404: %+v", v)
	}
}
