#!/usr/bin/env bash
# Memory per active series, wasmon vs Prometheus 2.42 (Debian), side by side:
# both scrape the same synthetic target on 127.0.0.1 for the same time.
#
#   bench/rss_per_series.sh [SERIES=100000] [SECONDS=90]
#
# Needs: python3, Debian's prometheus (apt-get install prometheus), and a
# release build (cargo build --release -p wasmon). Prints RSS, head series
# and RSS per series for each, and wasmon's bytes on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-100000}
SECONDS_RUN=${2:-90}
INTERVAL=10s
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "$1" | awk -v m="$2" '$1 == m {print $2}'; }

tport=$(free_port)
python3 bench/synth_target.py "$tport" "$SERIES" & pids+=($!)
sleep 2

# wasmon
wport=$(free_port)
mkdir -p "$work/wasmon"
cat > "$work/wasmon/wasmon.toml" <<CFG
[global]
scrape_interval = "$INTERVAL"
scrape_timeout = "9s"
[web]
listen_address = "127.0.0.1:$wport"
[plugins]
watch = false
[[scrape_configs]]
job_name = "synth"
static_configs = [{ targets = ["127.0.0.1:$tport"] }]
CFG
./target/release/wasmon --log.level warn run --config "$work/wasmon/wasmon.toml" & wpid=$!; pids+=($wpid)

# Prometheus 2.42
pport=$(free_port)
mkdir -p "$work/prom"
cat > "$work/prom/prometheus.yml" <<CFG
global:
  scrape_interval: $INTERVAL
  scrape_timeout: 9s
scrape_configs:
  - job_name: synth
    static_configs:
      - targets: ["127.0.0.1:$tport"]
CFG
prometheus --config.file "$work/prom/prometheus.yml" --storage.tsdb.path "$work/prom/data" \
  --web.listen-address "127.0.0.1:$pport" --log.level warn & ppid=$!; pids+=($ppid)

sleep "$SECONDS_RUN"
w_rss=$(rss_kib $wpid); p_rss=$(rss_kib $ppid)
w_series=$(metric "http://127.0.0.1:$wport/metrics" wasmon_tsdb_head_series)
p_series=$(metric "http://127.0.0.1:$pport/metrics" prometheus_tsdb_head_series)
w_disk=$(du -sk "$work/wasmon/data" | cut -f1); p_disk=$(du -sk "$work/prom/data" | cut -f1)
printf '%-22s %12s %12s %16s %12s\n' "" "RSS (MiB)" "head series" "RSS/series (B)" "disk (KiB)"
printf '%-22s %12.1f %12s %16.0f %12s\n' "wasmon" "$(echo "$w_rss/1024" | bc -l)" "$w_series" "$(echo "$w_rss*1024/$w_series" | bc -l)" "$w_disk"
printf '%-22s %12.1f %12s %16.0f %12s\n' "prometheus 2.42" "$(echo "$p_rss/1024" | bc -l)" "$p_series" "$(echo "$p_rss*1024/$p_series" | bc -l)" "$p_disk"
echo "(${SERIES} target series + synthetic series, ${SECONDS_RUN}s at ${INTERVAL}; RSS includes each binary's baseline)"
