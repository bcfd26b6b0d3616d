package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/synthstack/byok/shared/provider"
)

// SecretsAPI is the subset of *secretsmanager.Client used at start-up.
type SecretsAPI interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// LoadInternalKeys reads the platform's provider keys from the secret arn,
// a JSON object {"openai": "...", "anthropic": "...", "google": "...",
// "mistral": "...", "cohere": "..."}; keys set in the
// environment are kept when the secret leaves them empty. Errors never
// include the secret's content.
func LoadInternalKeys(ctx context.Context, sm SecretsAPI, arn string, into map[provider.Name]string) error {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("read internal provider keys secret: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &m); err != nil {
		return fmt.Errorf("internal provider keys secret must be a JSON object of strings like {\"openai\":\"sk-...\",\"anthropic\":\"sk-ant-...\"}")
	}
	// Azure OpenAI has no platform key: its endpoints are the users' own.
	for _, p := range []provider.Name{provider.OpenAI, provider.Anthropic, provider.Google, provider.Mistral, provider.Cohere} {
		if v := m[string(p)]; v != "" {
			into[p] = v
		}
	}
	return nil
}

// LoadJWTSecret reads the HS256 token secret from the secret arn: its
// SecretString, the secret itself (surrounding whitespace trimmed). Errors
// never include the secret's content.
func LoadJWTSecret(ctx context.Context, sm SecretsAPI, arn string) ([]byte, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("auth: read the token secret AUTH_JWT_SECRET_ARN: %w", err)
	}
	s := strings.TrimSpace(aws.ToString(out.SecretString))
	if s == "" {
		return nil, fmt.Errorf("auth: the secret named by AUTH_JWT_SECRET_ARN is empty (it needs a SecretString of at least 32 bytes)")
	}
	return []byte(s), nil
}
