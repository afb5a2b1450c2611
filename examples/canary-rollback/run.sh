#!/usr/bin/env bash
# The canary-rollback demo: deploy a bad version -> alert -> automatic
# rollback -> metrics back to normal -> resolved notification.
# Needs python3, cargo, and a wasm toolchain for `cargo xtask plugins`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "== building wasmon and the plugins"
(cd "$root" && cargo build -q -p wasmon && cargo xtask plugins >/dev/null 2>&1)
wasmon="$root/target/debug/wasmon"
mkdir -p "$work/plugins"
cp "$root/target/plugins/webhook.wasm" "$root/target/plugins/http-action.wasm" "$work/plugins/"
cp "$here/wasmon.toml" "$here/rules.yml" "$work/"

python3 "$here/app.py" sink 8082 & pids+=($!)
python3 "$here/app.py" app 8081 & pids+=($!)
"$wasmon" run --config "$work/wasmon.toml" 2>"$work/wasmon.log" & pids+=($!)
until curl -sf http://127.0.0.1:9930/-/ready >/dev/null; do sleep 0.2; done
status() { "$wasmon" rollouts --url http://127.0.0.1:9930 | sed 's/^/    /'; }

echo "== v1 serving; wasmon takes it as the stable version"
sleep 4; status

echo "== deploying v2 (it fails 30% of requests)"
curl -s -X POST "http://127.0.0.1:8081/deploy?version=v2"
phase() { curl -s http://127.0.0.1:9930/api/v1/rollouts/shop | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["phase"])'; }
for _ in $(seq 1 60); do
  p="$(phase)"; [ "$p" = RolledBack ] || [ "$p" = StillFailing ] && break; sleep 1
done
status
echo "== error rate now:"
curl -s 'http://127.0.0.1:9930/api/v1/query' --data-urlencode \
  'query=sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))' |
  python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("   ", r[0]["value"][1] if r else "no data")'
echo "== waiting for the resolved notifications"
sleep 8
echo "== decision history"
curl -s http://127.0.0.1:9930/api/v1/rollouts/shop | python3 -c '
import json, sys
for d in json.load(sys.stdin)["data"]["history"]:
    print("   ", d["at"][11:19], d["event"], "-", d["message"])'
