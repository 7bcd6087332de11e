#!/usr/bin/env bash
# HTTP/2 (issue 15, item 9): h2load (64 connections, 10 and 1 streams each) against gatehouse with `listen.http2 = true` (Bun.serve,
# h2 by ALPN) and against nginx with `http2` on, and in the same run wrk (HTTP/1.1) against gatehouse's default raw HTTPS front end, against the http2 = true
# listener (an HTTP/1.1 client there) and against nginx. Two requests: proxied uncacheable 1 KB and a cache hit of 1 KB, over
# HTTPS with SNI and Host bench.test. Each server under test is one process (gatehouse workers = 1, nginx one worker) pinned
# to the last core; the origin (nginx, one worker), h2load and wrk share the other cores. Rounds are interleaved, the order
# rotating. Writes bench/H2.md. Builds the binary from the working tree into a temporary directory (dist/ is not touched).
# Needs Debian's nginx, wrk, nghttp2-client (h2load), openssl and curl.
# Usage: bench/h2.sh [ROUNDS] [SECONDS]   (or ROUNDS=… SECONDS=…; defaults 3 and 5: about 4½ minutes)
set -euo pipefail
ENV_SECS=$(printenv SECONDS || true)   # bash's own SECONDS counter shadows the variable; an exported one is still readable here
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)   # other jobs on the machine show here; the same-run ratios and CPU per request are what to read then
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${1:-${ROUNDS:-3}}
SECS=${2:-${ENV_SECS:-5}}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "bench/h2.sh: usage: bench/h2.sh [ROUNDS] [SECONDS] (positive integers)" >&2; exit 2; }
WARM=2 CONNS=64 STREAMS=10
HOST=bench.test
ORIGIN_PORT=18301 NGX_HTTPS=18302 GH_PORT=18303 GH_TLS=18304 GH_ADMIN=18305 H2_PORT=18306 H2_TLS=18307 H2_ADMIN=18308
CORES=$(nproc)
SRV_CPU=$((CORES - 1)) REST_CPU=$([ "$CORES" -gt 1 ] && echo "0-$((CORES - 2))" || echo 0)

[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk h2load openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "bench/h2.sh: $tool is missing (Debian: apt-get install nginx wrk nghttp2-client openssl curl util-linux)" >&2; exit 1; }
done
for port in $ORIGIN_PORT $NGX_HTTPS $GH_PORT $GH_TLS $GH_ADMIN $H2_PORT $H2_TLS $H2_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/h2.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done

WORK=$(mktemp -d /tmp/gatehouse-h2.XXXXXX)
SHM=$(mktemp -d /dev/shm/gatehouse-h2.XXXXXX)   # the nginx proxy's cache and temp files
chmod 755 "$WORK" "$SHM"   # nginx workers run as www-data
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench/h2.sh: $*" >&2; for f in "$WORK"/origin/error.log "$SHM"/proxy/error.log "$WORK"/gh/gatehouse.log "$WORK"/h2/gatehouse.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }

echo "building the binary" >&2
node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$WORK/gatehouse" >/dev/null || die "cannot build the binary"
GH_BIN=$WORK/gatehouse

# Origin content: a cacheable 1 KB and an uncacheable 1 KB; one ECDSA P-256 certificate for every proxy.
mkdir -p "$WORK/www/nostore" "$WORK/origin" "$WORK/gh/routes" "$WORK/h2/routes" "$SHM/proxy" "$SHM/cache"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"
cp "$WORK/www/1k" "$WORK/www/nostore/1k"
timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"
sni_script "$WORK/sni.lua"   # wrk -s sni.lua https://bench.test:PORT/…: SNI and Host bench.test, connecting to 127.0.0.1

nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www;
    location / { add_header Cache-Control \"public, max-age=3600\"; }
    location /nostore/ { add_header Cache-Control no-store; } }"
# The reference: nginx 1.22 with h2 and HTTP/1.1 by ALPN on one TLS listener (\`listen … ssl http2\`), the cache on except for /nostore/.
nginx_conf "$SHM/proxy" "proxy_cache_path $SHM/cache levels=1:2 keys_zone=gh:10m max_size=256m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
  server { listen 127.0.0.1:$NGX_HTTPS ssl http2; server_name $HOST;
    proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host;
    location / { proxy_pass http://origin; proxy_cache gh; proxy_cache_lock on; proxy_cache_valid 200 1h; add_header X-Cache \$upstream_cache_status; }
    location /nostore/ { proxy_pass http://origin; } }"
# Two gatehouses with the same site (bench/lib.sh's gh_config and gh_site): the default (HTTPS on the raw front end) and http2 = true (Bun.serve).
WORK=$WORK/gh gh_config "https = \"127.0.0.1:$GH_TLS\"" "[cache]
max_size = \"256MiB\""
WORK=$WORK/h2 GH_PORT=$H2_PORT GH_ADMIN=$H2_ADMIN gh_config "https = \"127.0.0.1:$H2_TLS\"
http2 = true" "[cache]
max_size = \"256MiB\""
gh_site "$WORK/gh/routes/bench.toml"
cp "$WORK/gh/routes/bench.toml" "$WORK/h2/routes/bench.toml"
for g in gh h2; do timeout 60 "$GH_BIN" check -c "$WORK/$g/config.toml" >&2 || die "gatehouse check refused the $g config"; done

taskset -c "$REST_CPU" nginx -c "$WORK/origin/nginx.conf" & pids+=($!)
taskset -c "$SRV_CPU" nginx -c "$SHM/proxy/nginx.conf" & NGX_MASTER=$!; pids+=($NGX_MASTER)
(cd "$WORK/gh" && exec taskset -c "$SRV_CPU" "$GH_BIN" run -c "$WORK/gh/config.toml" > "$WORK/gh/gatehouse.log" 2>&1) & GH_PID=$!; pids+=($GH_PID)
(cd "$WORK/h2" && exec taskset -c "$SRV_CPU" "$GH_BIN" run -c "$WORK/h2/config.toml" > "$WORK/h2/gatehouse.log" 2>&1) & H2_PID=$!; pids+=($H2_PID)

# curl over HTTPS by the site's name, resolved to 127.0.0.1; $1 --http2 | --http1.1, $2 port, $3 path, then more curl arguments.
hcurl() { local v=$1 port=$2 path=$3; shift 3; curl -sk --max-time 2 "$v" --resolve "$HOST:$port:127.0.0.1" "$@" "https://$HOST:$port$path"; }
answers() { # $1 --http2 | --http1.1, $2 port, $3 path, $4 the HTTP version it must use: waits up to 10 s for a 200 over that version
  local i got
  for i in $(seq 100); do
    got=$(hcurl "$1" "$2" "$3" -o /dev/null -w '%{http_version} %{http_code}' || true)
    [ "$got" = "$4 200" ] && return 0
    sleep 0.1
  done
  die "https://$HOST:$2$3 ($1) answered \"$got\", not \"$4 200\""
}
answers --http2 "$NGX_HTTPS" /nostore/1k 2; answers --http1.1 "$NGX_HTTPS" /nostore/1k 1.1
answers --http2 "$H2_TLS" /nostore/1k 2; answers --http1.1 "$H2_TLS" /nostore/1k 1.1
# The raw front end offers no h2: a client asking for it gets HTTP/1.1.
answers --http2 "$GH_TLS" /nostore/1k 1.1
NGX_WORKER=$(pgrep -P "$NGX_MASTER" -f 'worker process' | head -1)
[ -n "$NGX_WORKER" ] || die "no nginx worker process found"
# Fill the caches, then check that each answers /1k from its cache.
for port in $NGX_HTTPS $GH_TLS $H2_TLS; do hcurl --http1.1 "$port" /1k -o /dev/null; hcurl --http1.1 "$port" /1k -o /dev/null; done
hcurl --http2 "$NGX_HTTPS" /1k -D - -o /dev/null | grep -qi "^x-cache: HIT" || die "nginx is not answering /1k from its cache"
hcurl --http1.1 "$GH_TLS" /1k -D - -o /dev/null | grep -qi "^cache-status: gatehouse; hit" || die "gatehouse (raw front end) is not answering /1k from its cache"
hcurl --http2 "$H2_TLS" /1k -D - -o /dev/null | grep -qi "^cache-status: gatehouse; hit" || die "gatehouse (http2 = true) is not answering /1k from its cache"

# One h2load run prints one record: "rps mean_ms - server_cpu_us_per_req new_conns_per_req non2xx failed MiB/s max_ms" (the fields of
# lib.sh's run_wrk; h2load gives no percentiles, so the second field is the mean time per request and the third is "-").
run_h2load() { # $1 server pid, $2 seconds, $3 port, $4 path, $5 concurrent streams per connection
  local pid=$1 secs=$2 port=$3 path=$4 streams=$5 c0 o0 out
  c0=$(cpu_ticks "$pid"); o0=$(passive_opens)
  out=$(timeout $((secs + 30)) taskset -c "$REST_CPU" h2load -t1 -c"$CONNS" -m"$streams" -D "$secs" --connect-to="127.0.0.1:$port" "https://$HOST:$port$path" 2>&1 || true)
  grep -q "^Application protocol: h2$" <<< "$out" || die "h2load did not speak h2 to port $port: $(tail -5 <<< "$out")"
  awk -v cpu=$(( $(cpu_ticks "$pid") - c0 )) -v opens=$(( $(passive_opens) - o0 )) -v tick="$TICK" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^finished in/ {rps=$4; v=$6; m=1/1048576; if (v ~ /KB\/s$/) m=1/1024; else if (v ~ /MB\/s$/) m=1; else if (v ~ /GB\/s$/) m=1024; gsub(/[A-Za-z\/]+$/, "", v); mibs=v*m}
    /^requests:/ {n=$2; failed=$10 + $12 + $14}
    /^status codes:/ {bad=$5 + $7 + $9}
    /^time for request:/ {mean=ms($6); max=ms($5)}
    END {printf "%.0f %.3f - %.0f %.2f %d %d %.1f %.3f\n", rps, mean, n ? cpu*1e6/tick/n : 0, n ? opens/n : 0, bad, failed, mibs, max}' <<< "$out"
}
# wrk pinned beside the origin (lib.sh's run_wrk: "rps p50ms p99ms server_cpu_us_per_req new_conns_per_req non2xx socket_errors MiB/s maxms").
pinned_wrk() { # $1 server pid, $2 seconds, $3 port, $4 path
  taskset -c "$REST_CPU" bash -c "$(declare -f run_wrk tree_pids cpu_ticks passive_opens); TICK=$TICK; run_wrk $1 $2 $CONNS https://$HOST:$3$4 -s $WORK/sni.lua"
}

ROWS=(gh_h2 ngx_h2 gh_h2m1 ngx_h2m1 gh_h1 gh2_h1 ngx_h1)
declare -A WHAT=(
  [gh_h2]="gatehouse, \`http2 = true\` (Bun.serve) | h2 | h2load -c$CONNS -m$STREAMS"
  [ngx_h2]="nginx, \`http2\` on | h2 | h2load -c$CONNS -m$STREAMS"
  [gh_h2m1]="gatehouse, \`http2 = true\` (Bun.serve) | h2 | h2load -c$CONNS -m1"
  [ngx_h2m1]="nginx, \`http2\` on | h2 | h2load -c$CONNS -m1"
  [gh_h1]="gatehouse, default (raw front end) | HTTP/1.1 | wrk -c$CONNS"
  [gh2_h1]="gatehouse, \`http2 = true\` (Bun.serve) | HTTP/1.1 | wrk -c$CONNS"
  [ngx_h1]="nginx, \`http2\` on | HTTP/1.1 | wrk -c$CONNS")
declare -A ROW=(   # tool, server pid, port, h2 streams per connection
  [gh_h2]="h2load $H2_PID $H2_TLS $STREAMS" [ngx_h2]="h2load $NGX_WORKER $NGX_HTTPS $STREAMS"
  [gh_h2m1]="h2load $H2_PID $H2_TLS 1" [ngx_h2m1]="h2load $NGX_WORKER $NGX_HTTPS 1" [gh_h1]="wrk $GH_PID $GH_TLS" [gh2_h1]="wrk $H2_PID $H2_TLS" [ngx_h1]="wrk $NGX_WORKER $NGX_HTTPS")
SCENARIOS=(nostore hit)
declare -A PATHOF=([nostore]=/nostore/1k [hit]=/1k)
declare -A TITLE=([nostore]="proxied uncacheable 1 KB (\`/nostore/1k\`)" [hit]="cache hit 1 KB (\`/1k\`)")
measure() { # $1 row, $2 scenario, $3 seconds
  local tool pid port streams; read -r tool pid port streams <<< "${ROW[$1]}"
  if [ "$tool" = h2load ]; then run_h2load "$pid" "$3" "$port" "${PATHOF[$2]}" "$streams"; else pinned_wrk "$pid" "$3" "$port" "${PATHOF[$2]}"; fi
}
alive() { for p in $GH_PID $H2_PID $NGX_WORKER; do kill -0 "$p" 2>/dev/null || die "a server under test (pid $p) died during $1"; done; }

for s in "${SCENARIOS[@]}"; do
  for row in "${ROWS[@]}"; do measure "$row" "$s" "$WARM" > /dev/null; : > "$WORK/$s-$row.txt"; done   # warm-up
  for r in $(seq "$ROUNDS"); do
    # The order rotates by one each round, so no row is always first or last.
    order=("${ROWS[@]:$(( (r - 1) % ${#ROWS[@]} ))}" "${ROWS[@]:0:$(( (r - 1) % ${#ROWS[@]} ))}")
    for row in "${order[@]}"; do measure "$row" "$s" "$SECS" >> "$WORK/$s-$row.txt"; done
    echo "$s round $r: $(for row in "${ROWS[@]}"; do printf '%s %s | ' "$row" "$(tail -1 "$WORK/$s-$row.txt" | cut -d' ' -f1)"; done)" >&2
  done
  alive "$s"
done
rss() { awk '$1 == "VmRSS:" {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
RSS_GH=$(rss "$GH_PID") RSS_H2=$(rss "$H2_PID") RSS_NGX=$(rss "$NGX_WORKER")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }
med() { col "$WORK/$1-$2.txt" "$3"; }   # $1 scenario, $2 row, $3 column
paired() { # $1 scenario, $2 row A, $3 row B: min–max over rounds of A/B
  paste -d' ' "$WORK/$1-$2.txt" "$WORK/$1-$3.txt" | awk '{print ($10 ? $1 / $10 : 0)}' | sort -n | awk 'NR == 1 {a = $1} {b = $1} END {printf "%.2f–%.2f", a, b}'
}
errors() { awk '{n += $6 + $7} END {print n + 0}' "$WORK/$1-$2.txt"; }
{
  echo "# HTTP/2: gatehouse with \`listen.http2 = true\` against nginx, and against its own HTTP/1.1 front end"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M') UTC, $CORES cores, $(uname -sr), $(nginx -v 2>&1 | sed 's/.*: //'), $(h2load --version 2>&1 | head -1), wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'),"
  echo "Bun $(node_modules/.bin/bun --version), gatehouse \`$(git rev-parse --short HEAD)\` with the working tree's changes, compiled (\`bun build --compile --bytecode\`)."
  echo "\`bench/h2.sh $ROUNDS $SECS\`, $(( $(date +%s) - T0 )) s, load average $LOAD0 at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end. Each server under test is one process pinned to core $SRV_CPU (gatehouse \`workers = 1\`,"
  echo "access log off; nginx one worker); the nginx origin, h2load and wrk are pinned to cores $REST_CPU. Every request is HTTPS (TLS 1.3,"
  echo "ECDSA P-256) with SNI and \`:authority\`/\`Host\` \`bench.test\`. h2load: $CONNS connections × $STREAMS concurrent streams, one thread;"
  echo "wrk: $CONNS connections, two threads. A ${WARM} s warm-up of each row, then $ROUNDS rounds of $SECS s per row, the order rotating each"
  echo "round. Medians over the rounds; \"paired\" is the ratio within each round (min–max). CPU is the server's user + system time per"
  echo "request. h2load reports no percentiles: its latency column is the mean time per request (with -m$STREAMS, $((CONNS * STREAMS)) requests are"
  echo "in flight against wrk's $CONNS, so compare wrk with the -m1 rows). \"new connections/req\" in the raw records counts every TCP"
  echo "connection accepted on the machine, the origin's included: with $((CONNS * STREAMS)) proxied requests in flight both proxies open"
  echo "upstream connections past their idle pools (nginx \`keepalive 64\`), which is most of the cost of the proxied -m$STREAMS rows."
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "## ${TITLE[$s]}"
    echo
    echo "| server | protocol | load | req/s | latency ms (h2load mean / wrk p50) | wrk p99 ms | CPU µs/req | errors |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for row in "${ROWS[@]}"; do
      echo "| ${WHAT[$row]} | $(med "$s" "$row" 1) | $(med "$s" "$row" 2) | $(if [[ $row == *_h2* ]]; then echo "—"; else med "$s" "$row" 3; fi) | $(med "$s" "$row" 4) | $(errors "$s" "$row") |"
    done
    echo
    echo "| same-run ratio of req/s | median | paired |"
    echo "| --- | ---: | --- |"
    echo "| gatehouse h2 ÷ nginx h2, $STREAMS streams per connection | **$(ratio "$(med "$s" gh_h2 1)" "$(med "$s" ngx_h2 1)")** | $(paired "$s" gh_h2 ngx_h2) |"
    echo "| gatehouse h2 ÷ nginx h2, 1 stream per connection | **$(ratio "$(med "$s" gh_h2m1 1)" "$(med "$s" ngx_h2m1 1)")** | $(paired "$s" gh_h2m1 ngx_h2m1) |"
    echo "| gatehouse HTTP/1.1 (raw front end) ÷ nginx HTTP/1.1 | **$(ratio "$(med "$s" gh_h1 1)" "$(med "$s" ngx_h1 1)")** | $(paired "$s" gh_h1 ngx_h1) |"
    echo "| gatehouse h2, $STREAMS streams ÷ gatehouse HTTP/1.1 on the raw front end (what an h2 client gets from http2 = true) | **$(ratio "$(med "$s" gh_h2 1)" "$(med "$s" gh_h1 1)")** | $(paired "$s" gh_h2 gh_h1) |"
    echo "| gatehouse h2, 1 stream ÷ gatehouse HTTP/1.1 on the raw front end (the same $CONNS requests in flight) | **$(ratio "$(med "$s" gh_h2m1 1)" "$(med "$s" gh_h1 1)")** | $(paired "$s" gh_h2m1 gh_h1) |"
    echo "| gatehouse HTTP/1.1 on Bun.serve ÷ on the raw front end (what an HTTP/1.1 client gets from http2 = true) | **$(ratio "$(med "$s" gh2_h1 1)" "$(med "$s" gh_h1 1)")** | $(paired "$s" gh2_h1 gh_h1) |"
    echo "| nginx h2, 1 stream ÷ nginx HTTP/1.1 | $(ratio "$(med "$s" ngx_h2m1 1)" "$(med "$s" ngx_h1 1)") | $(paired "$s" ngx_h2m1 ngx_h1) |"
  done
  echo
  echo "Resident memory after the run: gatehouse default ${RSS_GH} MiB, gatehouse http2 = true ${RSS_H2} MiB, nginx worker ${RSS_NGX} MiB."
  echo
  echo "Raw records, per scenario and row (req/s, latency ms, p99 ms or -, CPU µs/req, new connections/req, non-2xx, failed or socket errors, MiB/s, max ms):"
  echo
  echo '```'
  for s in "${SCENARIOS[@]}"; do for row in "${ROWS[@]}"; do while read -r line; do echo "$s $row $line"; done < "$WORK/$s-$row.txt"; done; done
  echo '```'
} > bench/H2.md.new
mv bench/H2.md.new bench/H2.md
echo "bench/h2.sh: wrote bench/H2.md in $(( $(date +%s) - T0 )) s" >&2
