#!/usr/bin/env bash
# Proxied 1 KB on loopback: gatehouse against nginx proxying to the same nginx origin, same run,
# interleaved A B A B. Writes bench/RESULTS.md. Needs Debian's nginx and wrk.
# Usage: bench/proxy.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-3}
SECS=${2:-8}
CONNS=64
WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as www-data
ORIGIN_PORT=18181 NGINX_PORT=18182 GH_PORT=18183 GH_ADMIN=18184
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/www" "$WORK/routes" "$WORK/nginx-origin" "$WORK/nginx-proxy"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"

nginx_conf "$WORK/nginx-origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; location / { add_header Cache-Control no-store; } }"
nginx_conf "$WORK/nginx-proxy" "upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; } }"
gh_config "" ""
printf 'hosts = ["127.0.0.1"]\nupstreams = ["http://127.0.0.1:%s"]\n' "$ORIGIN_PORT" > "$WORK/routes/bench.toml"

nginx -c "$WORK/nginx-origin/nginx.conf" & pids+=($!)
nginx -c "$WORK/nginx-proxy/nginx.conf" & pids+=($!)
node_modules/.bin/bun src/main.ts run -c "$WORK/config.toml" > "$WORK/gatehouse.log" 2>&1 & GH_PID=$!; pids+=($GH_PID)
for i in $(seq 50); do curl -sf "http://127.0.0.1:$GH_ADMIN/readyz" >/dev/null && break; sleep 0.1; done
for port in $NGINX_PORT $GH_PORT; do
  for i in $(seq 50); do curl -sf "http://127.0.0.1:$port/1k" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/1k" >/dev/null || { echo "nothing answers on port $port" >&2; cat "$WORK"/*/error.log "$WORK/gatehouse.log" >&2; exit 1; }
done

run() { # $1 port -> "rps p50ms p99ms"
  wrk -t2 -c$CONNS -d"${SECS}s" --latency "http://127.0.0.1:$1/1k" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f\n", rps, ms(p50), ms(p99)}'
}

wrk -t2 -c$CONNS -d2s "http://127.0.0.1:$GH_PORT/1k" >/dev/null   # warm-up
wrk -t2 -c$CONNS -d2s "http://127.0.0.1:$NGINX_PORT/1k" >/dev/null
: > "$WORK/nginx.txt"; : > "$WORK/gh.txt"
for r in $(seq "$ROUNDS"); do
  run $NGINX_PORT >> "$WORK/nginx.txt"
  run $GH_PORT >> "$WORK/gh.txt"
  echo "round $r: nginx $(tail -1 "$WORK/nginx.txt") | gatehouse $(tail -1 "$WORK/gh.txt")" >&2
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/$GH_PID/status)
n_rps=$(cut -d' ' -f1 "$WORK/nginx.txt" | median); g_rps=$(cut -d' ' -f1 "$WORK/gh.txt" | median)
n_p50=$(cut -d' ' -f2 "$WORK/nginx.txt" | median); g_p50=$(cut -d' ' -f2 "$WORK/gh.txt" | median)
n_p99=$(cut -d' ' -f3 "$WORK/nginx.txt" | median); g_p99=$(cut -d' ' -f3 "$WORK/gh.txt" | median)
ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", g/n}')
{
  echo "# Benchmark results"
  echo
  echo "Proxied 1 KB (uncacheable), loopback, \`wrk -t2 -c$CONNS -d${SECS}s\`, median of $ROUNDS interleaved rounds."
  echo "Origin: nginx (1 worker). Proxies: nginx 1 worker (upstream keepalive 64, HTTP/1.1, access log off)"
  echo "and gatehouse (one process, access log off). Machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d)."
  echo
  echo "| scenario | nginx req/s | gatehouse req/s | ratio | nginx p50 / p99 (ms) | gatehouse p50 / p99 (ms) | gatehouse peak RSS |"
  echo "| --- | ---: | ---: | ---: | --- | --- | ---: |"
  echo "| proxied 1 KB | $n_rps | $g_rps | $ratio | $n_p50 / $n_p99 | $g_p50 / $g_p99 | $((RSS / 1024)) MiB |"
  echo
  echo "Gatehouse's access log was ${GH_ACCESS_LOG:-false} in this run (nginx's is off); \`GH_ACCESS_LOG=true bench/proxy.sh\` measures it on."
  echo "Rerun: \`bench/proxy.sh [ROUNDS] [SECONDS]\` (needs Debian's nginx and wrk)."
  echo
  echo "Rounds (req/s p50 p99):"
  echo
  paste -d'|' "$WORK/nginx.txt" "$WORK/gh.txt" | awk -F'|' '{print "- nginx " $1 " · gatehouse " $2}'
} > bench/RESULTS.md
cat bench/RESULTS.md
