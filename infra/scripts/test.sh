#!/usr/bin/env bash
# make test: start moto_server on a free port (unless AWS_ENDPOINT_URL already
# points at an emulator), run every test against it, stop it.
set -euo pipefail
cd "$(dirname "$0")/../.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "make test: '$1' not found. $2" >&2; exit 1; }; }
need go "Install Go 1.26 from https://go.dev/dl/."
need aws-lambda-rie "Run 'make tools' (installs it with go install into bin/tools)."
need chromium "Install Debian's chromium (apt-get install -y chromium): the settings page's browser tests drive it."

started=""
if [[ -z "${AWS_ENDPOINT_URL:-}" ]]; then
  need moto_server "Install it with: pip install 'moto[server]' (or point AWS_ENDPOINT_URL at LocalStack)."
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
  log=$(mktemp -t moto.XXXXXX.log)
  moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  started=$!
  trap 'kill $started 2>/dev/null || true; wait $started 2>/dev/null || true' EXIT
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  for i in $(seq 1 100); do
    curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break
    kill -0 "$started" 2>/dev/null || { echo "moto_server exited:"; cat "$log"; exit 1; }
    sleep 0.2
  done
  curl -fsS "$AWS_ENDPOINT_URL/moto-api/" >/dev/null || { echo "moto_server did not start on $AWS_ENDPOINT_URL"; cat "$log"; exit 1; }
  echo "moto_server on $AWS_ENDPOINT_URL"
fi
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} AWS_REGION=${AWS_REGION:-us-east-1}

out=$(gofmt -l . || true)
[[ -z "$out" ]] || { echo "gofmt needed on: $out" >&2; exit 1; }
go vet ./...
go test -count=1 -timeout 20m ${GOTESTFLAGS:-} ./...
