#!/usr/bin/env bash
# Cache hits on loopback: gatehouse's response cache against nginx's proxy_cache (in /dev/shm) in front of the same
# nginx origin, same run, interleaved A B A B, for a 1 KB and a 64 KB object. Writes bench/RESULTS-cache.md.
# Needs Debian's nginx and wrk. Usage: bench/cache.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-3}
SECS=${2:-6}
CONNS=64
WORK=$(mktemp -d /tmp/gatehouse-bench-cache.XXXXXX)
SHM=$(mktemp -d /dev/shm/gatehouse-nginx-cache.XXXXXX)
chmod 755 "$WORK" "$SHM"   # nginx workers run as www-data
ORIGIN_PORT=18281 NGINX_PORT=18282 GH_PORT=18283 GH_ADMIN=18284
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK" "$SHM"; }
trap cleanup EXIT

mkdir -p "$WORK/www" "$WORK/routes" "$WORK/nginx-origin" "$WORK/nginx-proxy"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"
head -c 65536 /dev/zero | tr '\0' 'y' > "$WORK/www/64k"
chown -R www-data "$SHM" 2>/dev/null || true

nginx_conf "$WORK/nginx-origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; location / { add_header Cache-Control \"public, max-age=3600\"; } }"
nginx_conf "$WORK/nginx-proxy" "proxy_cache_path $SHM levels=1:2 keys_zone=gh:10m max_size=256m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT; location / {
    proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host;
    proxy_cache gh; proxy_cache_lock on; proxy_cache_valid 200 1h; add_header X-Cache \$upstream_cache_status; } }"
gh_config "" "[cache]
max_size = \"256MiB\""
printf 'hosts = ["127.0.0.1"]\nupstreams = ["http://127.0.0.1:%s"]\n[cache]\n' "$ORIGIN_PORT" > "$WORK/routes/bench.toml"
node_modules/.bin/bun src/main.ts check -c "$WORK/config.toml" >/dev/null

nginx -c "$WORK/nginx-origin/nginx.conf" & pids+=($!)
nginx -c "$WORK/nginx-proxy/nginx.conf" & pids+=($!)
node_modules/.bin/bun src/main.ts run -c "$WORK/config.toml" > "$WORK/gatehouse.log" 2>&1 & GH_PID=$!; pids+=($GH_PID)
for i in $(seq 50); do curl -sf "http://127.0.0.1:$GH_ADMIN/readyz" >/dev/null && break; sleep 0.1; done
for port in $NGINX_PORT $GH_PORT; do
  for f in 1k 64k; do
    for i in $(seq 50); do curl -sf "http://127.0.0.1:$port/$f" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/$f" >/dev/null || { echo "nothing answers on port $port" >&2; cat "$WORK"/*/error.log "$WORK/gatehouse.log" >&2; exit 1; }
  done
done
# Both must answer from their cache now.
curl -sI "http://127.0.0.1:$NGINX_PORT/1k" | grep -qi "x-cache: HIT" || { echo "nginx is not answering from its cache" >&2; exit 1; }
curl -sI "http://127.0.0.1:$GH_PORT/1k" | grep -qi "cache-status: gatehouse; hit" || { echo "gatehouse is not answering from its cache" >&2; exit 1; }

run() { # $1 port $2 file -> "rps p50ms p99ms"
  wrk -t2 -c$CONNS -d"${SECS}s" --latency "http://127.0.0.1:$1/$2" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad=$NF}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f %d\n", rps, ms(p50), ms(p99), bad}'
}
origin_hits() { curl -s "http://127.0.0.1:$GH_ADMIN/metrics" | awk '/^gatehouse_cache_requests_total\{result="(miss)"\}/ {s+=$2} END {print s+0}'; }

rows=""
lines=""
for f in 1k 64k; do
  wrk -t2 -c$CONNS -d2s "http://127.0.0.1:$GH_PORT/$f" >/dev/null   # warm-up
  wrk -t2 -c$CONNS -d2s "http://127.0.0.1:$NGINX_PORT/$f" >/dev/null
  : > "$WORK/nginx-$f.txt"; : > "$WORK/gh-$f.txt"
  for r in $(seq "$ROUNDS"); do
    run $NGINX_PORT $f >> "$WORK/nginx-$f.txt"
    run $GH_PORT $f >> "$WORK/gh-$f.txt"
    echo "$f round $r: nginx $(tail -1 "$WORK/nginx-$f.txt") | gatehouse $(tail -1 "$WORK/gh-$f.txt")" >&2
    lines="$lines- $f: nginx $(tail -1 "$WORK/nginx-$f.txt") · gatehouse $(tail -1 "$WORK/gh-$f.txt")
"
  done
  n_rps=$(cut -d' ' -f1 "$WORK/nginx-$f.txt" | median); g_rps=$(cut -d' ' -f1 "$WORK/gh-$f.txt" | median)
  n_p50=$(cut -d' ' -f2 "$WORK/nginx-$f.txt" | median); g_p50=$(cut -d' ' -f2 "$WORK/gh-$f.txt" | median)
  n_p99=$(cut -d' ' -f3 "$WORK/nginx-$f.txt" | median); g_p99=$(cut -d' ' -f3 "$WORK/gh-$f.txt" | median)
  ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", g/n}')
  rows="$rows| cache hit $f | $n_rps | $g_rps | $ratio | $n_p50 / $n_p99 | $g_p50 / $g_p99 |
"
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/$GH_PID/status)
M=$(curl -s "http://127.0.0.1:$GH_ADMIN/metrics")
hit=$(echo "$M" | awk -F' ' '/^gatehouse_cache_requests_total\{result="hit"\}/ {print $2}')
miss=$(echo "$M" | awk -F' ' '/^gatehouse_cache_requests_total\{result="miss"\}/ {print $2}')
size=$(echo "$M" | awk -F' ' '/^gatehouse_cache_size_bytes / {print $2}')
hitrate=$(awk -v h="$hit" -v m="$miss" 'BEGIN {printf "%.5f", h/(h+m)}')
{
  echo "# Cache benchmark results"
  echo
  echo "Cache hits, loopback, \`wrk -t2 -c$CONNS -d${SECS}s\`, median of $ROUNDS interleaved rounds per object."
  echo "Origin: nginx (1 worker, \`Cache-Control: public, max-age=3600\`). nginx: 1 worker, \`proxy_cache\` in /dev/shm,"
  echo "\`proxy_cache_lock on\`, upstream keepalive 64, access log off. gatehouse: one process, \`[cache]\` on the route, access log"
  echo "${GH_ACCESS_LOG:-false}. Machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), Bun $(node_modules/.bin/bun --version)."
  echo
  echo "| scenario | nginx req/s | gatehouse req/s | ratio | nginx p50 / p99 (ms) | gatehouse p50 / p99 (ms) |"
  echo "| --- | ---: | ---: | ---: | --- | --- |"
  printf "%s" "$rows"
  echo
  echo "gatehouse: hit rate $hitrate ($hit hits, $miss misses over the run), cache size $size bytes, peak RSS $((RSS / 1024)) MiB."
  echo
  echo "Rounds (req/s p50 p99 non-2xx):"
  echo
  printf "%s" "$lines"
  echo
  echo "Rerun: \`bench/cache.sh [ROUNDS] [SECONDS]\` (needs Debian's nginx and wrk)."
} > bench/RESULTS-cache.md
cat bench/RESULTS-cache.md
