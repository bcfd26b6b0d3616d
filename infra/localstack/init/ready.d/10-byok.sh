#!/bin/bash
# Creates what the dev server does not create itself: a KMS key with the
# alias byok-dev (use KMS_KEY_ID=alias/byok-dev to try envelope encryption
# through KMS). Tables (with api_key_usage's org_usage index, which the
# bootstrap also adds to a table created before it existed) and the topic
# come from DEV_BOOTSTRAP=1; the tests create their own with unique prefixes.
set -euo pipefail
if ! awslocal kms describe-key --key-id alias/byok-dev >/dev/null 2>&1; then
  key=$(awslocal kms create-key --description "byok dev envelope key" --query KeyMetadata.KeyId --output text)
  awslocal kms create-alias --alias-name alias/byok-dev --target-key-id "$key"
fi
echo "byok: KMS alias/byok-dev ready"
