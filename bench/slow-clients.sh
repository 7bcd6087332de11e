#!/usr/bin/env bash
# Slow clients against gatehouse and nginx (issue 13, item 1): 2,000 connections trickling request bodies (half 100 KB, under
# request_buffer; half 10 MiB, over it) and 2,000 trickling heads, all from 127.0.1.0/24, while wrk sends normal proxied
# POSTs and GETs from 127.0.0.1. For each server: the share of normal requests answered 2xx, their p50 and p99, and the
# server's RSS. Both proxy the same nginx origin; nginx is configured with the same body limit (100 MiB) and enough
# worker_connections. Writes bench/SLOW-CLIENTS.md. Usage: bench/slow-clients.sh [SECONDS] (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${1:-15}
ORIGIN_PORT=18201 GH_PORT=18202 GH_ADMIN=18203 NGX_PORT=18204 HOST=bench.test
[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
ulimit -n 65536 2>/dev/null || true
WORK=$(mktemp -d /tmp/gatehouse-slow.XXXXXX); chmod 755 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/proxy" "$WORK/routes"
head -c 1024 /dev/zero | tr '\0' x > "$WORK/www/1k"
nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; client_max_body_size 100m;
  location / { add_header Cache-Control no-store; }
  location /upload { return 200 stored; } }"
nginx_conf "$WORK/proxy" "upstream o { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGX_PORT; client_max_body_size 100m;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
sed -i 's/worker_connections 4096/worker_connections 20000/' "$WORK/proxy/nginx.conf"
node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$WORK/gatehouse" >/dev/null
cat > "$WORK/config.toml" <<TOML
routes_dir = "routes"
[listen]
http = "127.0.0.1:$GH_PORT"
admin = "127.0.0.1:$GH_ADMIN"
[log]
access = false
TOML
printf 'hosts = ["%s", "127.0.0.1"]\nupstreams = ["http://127.0.0.1:%s"]\n' "$HOST" "$ORIGIN_PORT" > "$WORK/routes/bench.toml"
nginx -c "$WORK/origin/nginx.conf" & pids+=($!)
nginx -c "$WORK/proxy/nginx.conf" & pids+=($!); NGX_PID=$!
(cd "$WORK" && exec ./gatehouse run -c config.toml > gatehouse.log 2>&1) & pids+=($!); GH_PID=$!
for port in $GH_PORT $NGX_PORT; do for _ in $(seq 100); do curl -sf --max-time 1 "http://127.0.0.1:$port/1k" >/dev/null && break; sleep 0.1; done; done
rss() { local t=0 p; for p in $(tree_pids "$1"); do t=$(( t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo $(( t / 1024 )); }
echo 'wrk.method = "POST"; wrk.body = string.rep("p", 2048); wrk.headers["Content-Type"] = "text/plain"' > "$WORK/post.lua"
out="$WORK/results"; : > "$out"
for server in nginx gatehouse; do
  if [ $server = nginx ]; then port=$NGX_PORT pid=$(cat "$WORK/proxy/nginx.pid"); else port=$GH_PORT pid=$GH_PID; fi
  for kind in calm hostile; do
    hp=""
    if [ $kind = hostile ]; then
      node_modules/.bin/bun bench/hostile.ts "$port" "$HOST" 2000 2000 $((SECS + 8)) > "$WORK/hostile-$server.json" & hp=$!
      sleep 5   # every hostile connection open and trickling
    fi
    for what in get post; do
      if [ $what = get ]; then rec=$(run_wrk "$pid" "$SECS" 32 "http://127.0.0.1:$port/1k"); else rec=$(run_wrk "$pid" "$SECS" 32 "http://127.0.0.1:$port/upload" -s "$WORK/post.lua"); fi
      echo "$server $kind $what $rec $(rss "$pid")" >> "$out"
    done
    [ -n "$hp" ] && wait "$hp"
    sleep 2
  done
done
{
  echo "# Slow clients: gatehouse and nginx under 2,000 slow bodies and 2,000 slow heads"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, Linux $(uname -r), $(nginx -v 2>&1 | sed 's/.*: //'), Bun $(node_modules/.bin/bun --version); \`bench/slow-clients.sh $SECS\`."
  echo "Both proxies in front of one nginx origin, one process each, default settings except nginx's \`client_max_body_size 100m\` and"
  echo "\`worker_connections 20000\` (gatehouse: max_body_size 100 MiB, request_buffer 1 MiB, body_timeout 30 s, header_timeout 10 s by default)."
  echo "Hostile: 2,000 connections declaring bodies (half 100 KB, half 10 MiB) and 2,000 sending a head, each sending a few bytes a"
  echo "second, from 127.0.1.1–250. Normal: wrk -t2 -c32, ${SECS} s, from 127.0.0.1: GET /1k (proxied, uncached) and POST /upload (2 KB body)."
  echo
  echo "| server | load | request | req/s | 2xx share | p50 ms | p99 ms | errors (non-2xx + socket) | RSS MiB |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  while read -r server kind what rps p50 p99 cpu opens bad errs mibs maxms rssmib; do
    total=$(awk -v r="$rps" -v s="$SECS" 'BEGIN {printf "%d", r * s}')
    share=$(awk -v t="$total" -v b="$bad" -v e="$errs" 'BEGIN {if (t + e == 0) print "-"; else printf "%.2f %%", 100 * (t - b) / (t + e)}')
    echo "| $server | $kind | $what | $rps | $share | $p50 | $p99 | $((bad + errs)) | $rssmib |"
  done < "$out"
  echo
  for server in nginx gatehouse; do echo "- hostile clients against $server: $(cat "$WORK/hostile-$server.json")"; done
} > bench/SLOW-CLIENTS.md
cat bench/SLOW-CLIENTS.md
