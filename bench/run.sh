#!/usr/bin/env bash
# gatehouse against nginx on loopback, same run, interleaved A B A B, for six scenarios (proxied uncacheable 1 KB,
# cache hits of 1 KB and 64 KB, HTTPS keep-alive, a new TLS connection per request, a 1 MB streamed download) plus
# full TLS handshakes/s, each server with one worker; then gatehouse's memory, its start-to-serving time and a reload with
# 1,000 route files; then nginx with worker_processes = nproc against gatehouse with workers = nproc (proxied 1 KB, cache hits
# of 1 KB and 64 KB, HTTPS keep-alive proxied 1 KB), interleaved. All proxies sit in front of the same nginx origin (1 worker).
# HTTPS runs name the site (SNI and Host bench.test, connecting to 127.0.0.1). Writes bench/RESULTS.md.
# Needs Debian's nginx, wrk, openssl and curl.
# Usage: bench/run.sh [ROUNDS] [SECONDS]   (or ROUNDS=… SECONDS=… in the environment; defaults 3 and 5)
set -euo pipefail
# A probe that writes to a connection the server has just closed (an instance stopping while the next one starts on the same
# SO_REUSEPORT port) gets EPIPE, a failed probe, instead of a SIGPIPE that would end the whole run.
trap '' PIPE
ENV_SECS=$(printenv SECONDS || true)   # bash's own SECONDS counter shadows the variable; an exported one is still readable here
T0=$(date +%s)
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${1:-${ROUNDS:-3}}
SECS=${2:-${ENV_SECS:-5}}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/run.sh [ROUNDS] [SECONDS] (positive integers)" >&2; exit 2; }
WARM=$(( SECS < 2 ? SECS : 2 ))   # warm-up of each server before each scenario, seconds
PAR=4                              # parallel `openssl s_time` clients in the full-handshake row
RL_SECS=3 RL_PAIRS=2 RL_EVERY=1  # reload part: pairs of (wrk without reloads, wrk with a reload every RL_EVERY s)
HOST=bench.test
ORIGIN_PORT=18101 NGX_HTTP=18102 NGX_HTTPS=18103 GH_PORT=18104 GH_TLS=18105 GH_ADMIN=18106 PROBE_PORT=18107
WN_PORT=18108 WN_TLS=18109 WN_ADMIN=18110 NGX_N_HTTP=18111 NGX_N_HTTPS=18112   # the all-cores part: gatehouse workers = N, nginx N workers
NPROC=$(nproc)

[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk openssl curl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing (Debian: apt-get install nginx wrk openssl curl)" >&2; exit 1; }
done
for port in $ORIGIN_PORT $NGX_HTTP $NGX_HTTPS $GH_PORT $GH_TLS $GH_ADMIN $PROBE_PORT $WN_PORT $WN_TLS $WN_ADMIN $NGX_N_HTTP $NGX_N_HTTPS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/run.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done
# The compiled binary, as operators run it: built from the sources here first.
node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile dist/gatehouse >/dev/null || { echo "bench/run.sh: cannot build dist/gatehouse" >&2; exit 1; }
GH=(dist/gatehouse); GH_WHAT="the compiled binary dist/gatehouse (built by this run with \`bun build --compile --bytecode\`)"

WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/gatehouse-bench.XXXXXX)   # the nginx proxy's cache and temp files
chmod 755 "$WORK" "$SHM"   # nginx workers run as www-data
pids=() GH_PID=""
cleanup() {
  local p
  for p in "${pids[@]}" $GH_PID; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $GH_PID; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench/run.sh: $*" >&2; for f in "$WORK"/nginx-origin/error.log "$SHM"/proxy/error.log "$WORK/gatehouse.log"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }

# Origin content: cacheable 1 KB and 64 KB, an uncacheable 1 KB, an uncacheable 1 MiB to stream.
mkdir -p "$WORK/www/nostore" "$WORK/routes" "$WORK/nginx-origin" "$SHM/proxy" "$SHM/cache"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"
head -c 65536 /dev/zero | tr '\0' 'y' > "$WORK/www/64k"
cp "$WORK/www/1k" "$WORK/www/nostore/1k"
head -c 1048576 /dev/zero | tr '\0' 'z' > "$WORK/www/1m"
# One ECDSA P-256 certificate for both proxies. The IP name is there because the gatehouse route lists 127.0.0.1
# among its hosts and `check` refuses a manual certificate that does not cover every host of the site.
timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"
sni_script "$WORK/sni.lua"   # HTTPS runs: wrk -s sni.lua https://bench.test:PORT/… (SNI and Host bench.test, connecting to 127.0.0.1)

nginx_conf "$WORK/nginx-origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www;
    location / { add_header Cache-Control \"public, max-age=3600\"; }
    location /nostore/ { add_header Cache-Control no-store; }
    location = /1m { add_header Cache-Control no-store; } }"
# The proxy's config dir (so its proxy_temp_path, used by the 1 MB download) and its cache are both in /dev/shm.
# The probe server (same worker, own port, access log on) only answers the one-second resumption probe below.
# The cache is off on the no-store paths, in both proxies, as an operator who knows them would set it: with it on,
# nginx's proxy_cache_lock makes concurrent requests for a URL wait for the first one's response, and when that turns
# out uncacheable they wake only on the lock's 500 ms timer (p99 ~0.5 s, a third of the req/s in a trial run).
proxy_conf() { # $1 dir, $2 cache dir, $3 http port, $4 https port, $5 listen flags, $6 worker_processes, $7 more servers
  nginx_conf "$1" "proxy_cache_path $2 levels=1:2 keys_zone=gh:10m max_size=256m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
  log_format probe '\$connection \$ssl_session_reused \$status';
  server { listen 127.0.0.1:$3 $5; listen 127.0.0.1:$4 ssl $5; server_name $HOST;
    proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host;
    location / { proxy_pass http://origin;
      proxy_cache gh; proxy_cache_lock on; proxy_cache_valid 200 1h; add_header X-Cache \$upstream_cache_status; }
    location /nostore/ { proxy_pass http://origin; }
    location = /1m { proxy_pass http://origin; } }
  $7" "$6"
}
proxy_conf "$SHM/proxy" "$SHM/cache" $NGX_HTTP $NGX_HTTPS "" 1 \
  "server { listen 127.0.0.1:$PROBE_PORT ssl; access_log $WORK/probe.log probe; location / { return 200 ok; } }"
gh_config "https = \"127.0.0.1:$GH_TLS\"" "[cache]
max_size = \"256MiB\""
gh_site "$WORK/routes/bench.toml" /1m
timeout 60 "${GH[@]}" check -c "$WORK/config.toml" >&2 || die "gatehouse check refused the bench config"

nginx -c "$WORK/nginx-origin/nginx.conf" & pids+=($!)
nginx -c "$SHM/proxy/nginx.conf" & NGX_MASTER=$!; pids+=($NGX_MASTER)
for i in $(seq 50); do curl -sf --max-time 1 "http://127.0.0.1:$ORIGIN_PORT/1k" >/dev/null && break; sleep 0.1; done
curl -sf --max-time 1 "http://127.0.0.1:$ORIGIN_PORT/1k" >/dev/null || die "the origin nginx does not answer"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
vm_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }   # $1 pid, $2 VmRSS | VmHWM
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
ms_since() { local a=${1/./} b=${EPOCHREALTIME/./}; echo $(( (10#$b - 10#$a) / 1000 )); }   # $1 an $EPOCHREALTIME
probe_200() { # $1 port, $2 path: one GET over a new connection; true on a 200
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  IFS= read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  [[ $line == "HTTP/1.1 200"* ]]
}
# Start-to-serving: from spawn to the first 200 on a proxied URL, six times; the first also makes the internal CA and the
# fallback certificate (once per certs_dir), the median of the other five is the figure. The last instance stays for the bench.
START_MS=()
for n in 1 2 3 4 5 6; do
  if [ -n "$GH_PID" ]; then
    kill "$GH_PID"; for _ in $(seq 100); do kill -0 "$GH_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$GH_PID" 2>/dev/null || true; wait "$GH_PID" 2>/dev/null || true
  fi
  t=$EPOCHREALTIME
  "${GH[@]}" run -c "$WORK/config.toml" >> "$WORK/gatehouse.log" 2>&1 & GH_PID=$!
  ok=""
  # Polled with bash's own /dev/tcp (no process per attempt, so the poll adds well under a millisecond).
  deadline=$(( ${t/./} + 30000000 ))
  while (( ${EPOCHREALTIME/./} < deadline )); do
    kill -0 "$GH_PID" 2>/dev/null || die "gatehouse exited at start"
    probe_200 "$GH_PORT" /nostore/1k && { ok=1; break; }
  done
  [ -n "$ok" ] || die "gatehouse did not serve within 30 s"
  START_MS+=($(ms_since "$t"))
done
GH_IDLE_KIB=$(vm_kib "$GH_PID" VmRSS)

# HTTPS by the site's name (SNI and Host), as the wrk runs: a connection whose SNI names no site gets 421s from gatehouse.
answers() { # $1 http | https, $2 port, $3 path: wait up to 5 s for a 2xx (HTTPS to https://bench.test:PORT, resolved to 127.0.0.1)
  local url i
  if [ "$1" = https ]; then url="https://$HOST:$2$3"; else url="http://127.0.0.1:$2$3"; fi
  for i in $(seq 50); do curl -sfk --max-time 1 --resolve "$HOST:$2:127.0.0.1" -o /dev/null "$url" && return 0; sleep 0.1; done
  die "nothing answers $url"
}
answers http $NGX_HTTP /1k; answers https $NGX_HTTPS /nostore/1k; answers https $GH_TLS /nostore/1k
NGX_WORKER=$(pgrep -P "$NGX_MASTER" -f 'worker process' | head -1)
[ -n "$NGX_WORKER" ] || die "no nginx worker process found"
NGX_IDLE_KIB=$(vm_kib "$NGX_WORKER" VmRSS)
# Fill both caches, then check that both answer from them.
for port in $NGX_HTTP $GH_PORT; do for f in 1k 64k; do curl -sf -o /dev/null "http://127.0.0.1:$port/$f"; curl -sf -o /dev/null "http://127.0.0.1:$port/$f"; done; done
for f in 1k 64k; do
  curl -sI "http://127.0.0.1:$NGX_HTTP/$f" | grep -qi "x-cache: HIT" || die "nginx is not answering /$f from its cache"
  curl -sI "http://127.0.0.1:$GH_PORT/$f" | grep -qi "cache-status: gatehouse; hit" || die "gatehouse is not answering /$f from its cache"
done
[ "$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$GH_PORT/1m")" = 1048576 ] || die "gatehouse did not stream /1m whole"

# Does wrk resume TLS sessions when it reconnects? Ask nginx ($ssl_session_reused) over one second.
timeout 10 wrk -t1 -c2 -d1s -s "$WORK/sni.lua" -H "Connection: close" "https://$HOST:$PROBE_PORT/" >/dev/null || true
sleep 0.2
PROBE=$(awk '{n++; if (!($1 in c)) {c[$1]=1; k++} if ($2 == "r") r++} END {printf "%d requests on %d connections, %d of them resumed", n, k, r}' "$WORK/probe.log")
resumes() { # $1 port: does the server offer resumption? One s_client connection saves the session, a second offers it.
  local req="GET /nostore/1k HTTP/1.1\r\nHost: $HOST\r\nConnection: close\r\n\r\n"
  printf "$req" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$1" -servername "$HOST" -sess_out "$WORK/sess" >/dev/null 2>&1 || true
  printf "$req" | timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername "$HOST" -sess_in "$WORK/sess" 2>/dev/null | grep -q '^Reused' && echo yes || echo no
  rm -f "$WORK/sess"
}
N_RESUMES=$(resumes $NGX_HTTPS); G_RESUMES=$(resumes $GH_TLS)
G_CERT=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$GH_TLS" -servername 127.0.0.1 2>/dev/null | awk '/^ *0 s:/ {sub(/^ *0 s:/, ""); print; exit}' || true)

run_stime() { # $1 server pid, $2 seconds, $3 port: PAR sequential full-handshake clients in parallel, no HTTP request
  local pid=$1 secs=$2 port=$3 c0 t0 t1 i sp=(); c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  for i in $(seq $PAR); do timeout $((secs + 20)) openssl s_time -connect "127.0.0.1:$port" -new -time "$secs" > "$WORK/stime.$i" 2>&1 & sp+=($!); done
  wait "${sp[@]}" || true
  t1=$(date +%s.%N)
  cat "$WORK"/stime.* | awk -v cpu=$(( $(cpu_ticks "$pid") - c0 )) -v tick="$TICK" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v par=$PAR '
    /connections in .* real seconds/ {n+=$1}
    /ERROR|error|errno/ {err++}
    END {printf "%.0f %.3f - %.0f 1.00 0 %d - -\n", n/wall, n ? par*wall*1000/n : 0, n ? cpu*1e6/tick/n : 0, err}'
  rm -f "$WORK"/stime.*
}

SCENARIOS=(nostore hit1k hit64k tls_ka tls_new stream full)
declare -A TITLE=(
  [nostore]="proxied uncacheable 1 KB (\`/nostore/1k\`, HTTP, -c64)"
  [hit1k]="cache hit 1 KB (\`/1k\`, HTTP, -c64)"
  [hit64k]="cache hit 64 KB (\`/64k\`, HTTP, -c64)"
  [tls_ka]="HTTPS keep-alive, proxied 1 KB (\`/nostore/1k\`, -c64)"
  [tls_new]="new TLS connection per request, resumed, proxied 1 KB (\`Connection: close\`, -c16)"
  [stream]="1 MB streamed download (\`/1m\`, uncacheable, HTTP, -c8)"
  [full]="full TLS handshakes/s, no request (\`openssl s_time -new\`, $PAR clients)")
declare -A SHORT=([nostore]="uncacheable" [hit1k]="hit 1 KB" [hit64k]="hit 64 KB" [tls_ka]="HTTPS keep-alive" [tls_new]="new TLS connection"
  [stream]="1 MB download" [full]="full handshake")
declare -A SPEC=(   # scheme path connections [extra wrk arguments]
  [nostore]="http /nostore/1k 64" [hit1k]="http /1k 64" [hit64k]="http /64k 64" [tls_ka]="https /nostore/1k 64"
  [tls_new]="https /nostore/1k 16 Connection: close" [stream]="http /1m 8")
# Targets (issue 6), as a ratio gatehouse/nginx of req/s; an empty one shows as "—".
declare -A TARGET=([nostore]="0.9" [hit1k]="1.15" [hit64k]="1.15" [tls_ka]="0.9" [tls_new]="0.9" [stream]="" [full]="")
# The servers: "pid http-port https-port" (the all-cores ones, nginx_n and gatehouse_n, are added before their part).
# The pid's CPU is counted with its children's: nginx's one worker alone; nginx's master and workers; gatehouse's supervisor and workers.
declare -A SERVER=([nginx]="$NGX_WORKER $NGX_HTTP $NGX_HTTPS" [gatehouse]="$GH_PID $GH_PORT $GH_TLS")
runner() { # $1 scenario, $2 nginx | gatehouse | nginx_n | gatehouse_n, $3 seconds
  local s=$1 who=$2 secs=$3 pid http https port scheme path conns extra
  read -r scheme path conns extra <<< "${SPEC[$s]:-}"
  read -r pid http https <<< "${SERVER[$who]}"
  [ "$s" = full ] && { run_stime "$pid" "$secs" "$https"; return; }
  if [ "$scheme" = https ]; then set -- -s "$WORK/sni.lua"; port=$https; else set --; port=$http; fi   # HTTPS: SNI and Host bench.test
  [ -n "$extra" ] && set -- "$@" -H "$extra"
  if [ "$scheme" = https ]; then run_wrk "$pid" "$secs" "$conns" "https://$HOST:$port$path" "$@"
  else run_wrk "$pid" "$secs" "$conns" "http://127.0.0.1:$port$path" "$@"; fi
}
alive() { kill -0 "$GH_PID" 2>/dev/null || die "gatehouse died during $1"; kill -0 "$NGX_WORKER" 2>/dev/null || die "the nginx worker died during $1"; }

for s in "${SCENARIOS[@]}"; do
  runner "$s" gatehouse "$WARM" >/dev/null; runner "$s" nginx "$WARM" >/dev/null   # warm-up
  : > "$WORK/nginx-$s.txt"; : > "$WORK/gh-$s.txt"
  for r in $(seq "$ROUNDS"); do
    runner "$s" nginx "$SECS" >> "$WORK/nginx-$s.txt"
    runner "$s" gatehouse "$SECS" >> "$WORK/gh-$s.txt"
    echo "$s round $r: nginx $(tail -1 "$WORK/nginx-$s.txt") | gatehouse $(tail -1 "$WORK/gh-$s.txt")" >&2
  done
  alive "$s"
done
GH_PEAK_KIB=$(vm_kib "$GH_PID" VmHWM) GH_END_KIB=$(vm_kib "$GH_PID" VmRSS) NGX_PEAK_KIB=$(vm_kib "$NGX_WORKER" VmHWM)
M=$(curl -s "http://127.0.0.1:$GH_ADMIN/metrics")
CACHE_LINE=$(awk '/^gatehouse_cache_requests_total\{result="hit"\}/ {h=$2} /^gatehouse_cache_requests_total\{result="miss"\}/ {m=$2}
  /^gatehouse_cache_size_bytes / {z=$2} END {printf "hit rate %.5f (%d hits, %d misses), cache size %d bytes", (h+m) ? h/(h+m) : 0, h, m, z}' <<< "$M")
CACHE_BYTES=$(awk '/^gatehouse_cache_size_bytes / {print $2}' <<< "$M")

# Reload with 1,000 route files: one reload that adds them, then wrk without and with a reload every RL_EVERY s.
echo "reload: writing 1000 route files" >&2
for i in $(seq -w 1 1000); do
  printf 'hosts = ["h%s.%s"]\nupstreams = ["http://127.0.0.1:%s"]\n' "$i" "$HOST" "$ORIGIN_PORT" > "$WORK/routes/r$i.toml"
done
reload_ms() { grep '"msg":"config reloaded"' "$WORK/gatehouse.log" | sed -n "$(( $1 + 1 )),\$p" | grep -o '"ms":[0-9.]*' | cut -d: -f2; }
nreloads() { grep -c '"msg":"config reloaded"' "$WORK/gatehouse.log" || true; }
before=$(nreloads); t=$(now_ms)
timeout 60 "${GH[@]}" reload -c "$WORK/config.toml" >/dev/null 2>"$WORK/reload.err" || die "gatehouse reload with 1000 route files failed: $(cat "$WORK/reload.err")"
RL_WALL=$(( $(now_ms) - t ))
sleep 0.1
RL_FIRST=$(reload_ms "$before" | head -1)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: h1000.$HOST" "http://127.0.0.1:$GH_PORT/nostore/1k")" = 200 ] || die "a host added by the reload is not served"
URL="http://127.0.0.1:$GH_PORT/nostore/1k"
run_wrk "$GH_PID" 1 64 "$URL" >/dev/null   # warm-up
: > "$WORK/rl-base.txt"; : > "$WORK/rl-load.txt"
before=$(nreloads); sent=0
for r in $(seq $RL_PAIRS); do
  run_wrk "$GH_PID" $RL_SECS 64 "$URL" >> "$WORK/rl-base.txt"
  run_wrk "$GH_PID" $RL_SECS 64 "$URL" > "$WORK/rl-load.cur" & WRK_PID=$!; pids+=($WRK_PID)
  # Each reload adds or removes one more route file, so every reload changes the config.
  end=$(( $(now_ms) + RL_SECS * 1000 - 300 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    sleep "$RL_EVERY"
    if [ -e "$WORK/routes/extra.toml" ]; then rm "$WORK/routes/extra.toml"
    else printf 'hosts = ["extra.%s"]\nupstreams = ["http://127.0.0.1:%s"]\n' "$HOST" "$ORIGIN_PORT" > "$WORK/routes/extra.toml"; fi
    kill -HUP "$GH_PID"; sent=$((sent + 1))
  done
  wait "$WRK_PID" || true
  cat "$WORK/rl-load.cur" >> "$WORK/rl-load.txt"
  echo "reload pair $r: without $(tail -1 "$WORK/rl-base.txt") | with reloads $(tail -1 "$WORK/rl-load.txt")" >&2
done
sleep 0.5
alive "the reloads"
RL_MS=$(reload_ms "$before")
RL_DONE=$(grep -c . <<< "$RL_MS" || true)
RL_REJECTED=$(grep -c '"msg":"config rejected' "$WORK/gatehouse.log" || true)
RL_MED=$(median <<< "$RL_MS") RL_MAX=$(sort -n <<< "$RL_MS" | tail -1) RL_ALL=$(printf '%s\n%s\n' "$RL_FIRST" "$RL_MS" | median)
GH_PEAK2_KIB=$(vm_kib "$GH_PID" VmHWM)

# All cores: a second nginx proxy with worker_processes = NPROC and a second gatehouse with workers = NPROC (a supervisor and
# NPROC worker processes on SO_REUSEPORT listeners; nginx's listeners get reuseport too), the same site in front of the same
# origin, interleaved, alternately first. CPU is summed over all processes of each. The one-worker servers stay up, idle.
echo "all cores: nginx worker_processes $NPROC, gatehouse workers = $NPROC" >&2
mkdir -p "$SHM/proxy-n" "$SHM/cache-n"
proxy_conf "$SHM/proxy-n" "$SHM/cache-n" $NGX_N_HTTP $NGX_N_HTTPS reuseport "$NPROC" ""
nginx -c "$SHM/proxy-n/nginx.conf" & NGX_N_MASTER=$!; pids+=($NGX_N_MASTER)
WN=$WORK/wn; mkdir -p "$WN/routes"; cp "$WORK/routes/bench.toml" "$WN/routes/"
sed -e "s/127.0.0.1:$GH_PORT/127.0.0.1:$WN_PORT/" -e "s/127.0.0.1:$GH_TLS/127.0.0.1:$WN_TLS/" -e "s/127.0.0.1:$GH_ADMIN/127.0.0.1:$WN_ADMIN/" \
  -e "s|^routes_dir = .*|routes_dir = \"routes\"\nworkers = $NPROC|" "$WORK/config.toml" > "$WN/config.toml"
"${GH[@]}" run -c "$WN/config.toml" >> "$WORK/gatehouse-wn.log" 2>&1 & WN_PID=$!; pids+=($WN_PID)
for i in $(seq 100); do curl -sf --max-time 1 "http://127.0.0.1:$WN_ADMIN/readyz" >/dev/null && break; sleep 0.1; done
answers http $WN_PORT /nostore/1k; answers https $WN_TLS /nostore/1k; answers http $NGX_N_HTTP /nostore/1k; answers https $NGX_N_HTTPS /nostore/1k
(( $(pgrep -c -P "$WN_PID" || true) >= NPROC )) || die "gatehouse with workers = $NPROC has fewer than $NPROC worker processes"
(( $(pgrep -c -P "$NGX_N_MASTER" -f 'worker process' || true) == NPROC )) || die "nginx with worker_processes $NPROC has not $NPROC workers"
# Fill the caches (each gatehouse worker has its own; new connections spread over the workers), then check a hit on each.
for port in $NGX_N_HTTP $WN_PORT; do for f in 1k 64k; do for i in $(seq 20); do curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$port/$f"; done; done; done
for f in 1k 64k; do
  curl -sI "http://127.0.0.1:$NGX_N_HTTP/$f" | grep -qi "x-cache: HIT" || die "nginx ($NPROC workers) is not answering /$f from its cache"
  curl -sI "http://127.0.0.1:$WN_PORT/$f" | grep -qi "cache-status: gatehouse; hit" || die "gatehouse (workers = $NPROC) is not answering /$f from its cache"
done
SERVER[nginx_n]="$NGX_N_MASTER $NGX_N_HTTP $NGX_N_HTTPS" SERVER[gatehouse_n]="$WN_PID $WN_PORT $WN_TLS"
alive_n() { kill -0 "$WN_PID" 2>/dev/null || die "gatehouse (workers = $NPROC) died during $1"; kill -0 "$NGX_N_MASTER" 2>/dev/null || die "nginx ($NPROC workers) died during $1"; }
ALL=(nostore hit1k hit64k tls_ka tls_new)   # tls_new: with several workers, a returning client resumes only on the worker that issued its ticket (docs/tls-resumption.md)
for s in "${ALL[@]}"; do
  runner "$s" gatehouse_n "$WARM" >/dev/null; runner "$s" nginx_n "$WARM" >/dev/null   # warm-up
  : > "$WORK/nginx_n-$s.txt"; : > "$WORK/gatehouse_n-$s.txt"
  for r in $(seq "$ROUNDS"); do
    if (( r % 2 )); then order="nginx_n gatehouse_n"; else order="gatehouse_n nginx_n"; fi
    for w in $order; do runner "$s" "$w" "$SECS" >> "$WORK/$w-$s.txt"; done
    echo "all cores $s round $r (${order%%_n *} first): nginx $(tail -1 "$WORK/nginx_n-$s.txt") | gatehouse $(tail -1 "$WORK/gatehouse_n-$s.txt")" >&2
  done
  alive_n "$s"
done
WN_RSS_KIB=0; for p in $(tree_pids "$WN_PID"); do WN_RSS_KIB=$(( WN_RSS_KIB + $(vm_kib "$p" VmRSS) )); done
NGX_N_RSS_KIB=0; for p in $(pgrep -P "$NGX_N_MASTER" -f 'worker process'); do NGX_N_RSS_KIB=$(( NGX_N_RSS_KIB + $(vm_kib "$p" VmRSS) )); done
kill "$WN_PID" "$NGX_N_MASTER" 2>/dev/null || true
ELAPSED=$(( $(date +%s) - T0 ))

errs() { # $1 file prefix, $2 name of the scenario array: "N non-2xx, M socket errors" over its rounds
  local -n list=$2; local s
  for s in "${list[@]}"; do cat "$WORK/$1-$s.txt"; done | awk '{n += $6; e += $7} END {print n + 0 " non-2xx, " e + 0 " socket errors"}'
}
yesno() { awk -v c="$1" 'BEGIN {print (c) ? "met" : "**not met**"}'; }
sorted_start=$(printf '%s\n' "${START_MS[@]:1}" | median)
b99=$(col "$WORK/rl-base.txt" 3) l99=$(col "$WORK/rl-load.txt" 3)
rl_errs=$(awk '{b += $6; e += $7} END {print b + 0, e + 0}' "$WORK/rl-load.txt")
# The rows of the first table that link to another bench's own results (…](STATIC.md)), kept across this rewrite.
KEPT_ROWS=$(grep -E '^\| .*\]\([A-Z-]+\.md\)' bench/RESULTS.md 2>/dev/null | grep -v '^| scenario' || true)
{
  echo "# Benchmark results: gatehouse against nginx"
  echo
  echo "Loopback, same run: for each scenario a ${WARM} s warm-up of each server, then $ROUNDS interleaved round(s) (nginx, gatehouse, nginx,"
  echo "gatehouse, …) of ${SECS} s; figures are medians over the rounds, ratio = median gatehouse req/s ÷ median nginx req/s."
  echo "wrk \`-t2 --latency\`, connections per row. Treat the figures as noisy (load generator, origin and proxy share the cores, and"
  echo "so do other jobs on this machine): read the ratios, not the absolutes."
  echo
  echo "Machine: $(nproc) cores, Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC'); $(nginx -v 2>&1 | sed 's/.*: //'),"
  echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(openssl version | awk '{print $1, $2}'), Bun $(node_modules/.bin/bun --version); gatehouse run as $GH_WHAT."
  echo "Whole run: ${ELAPSED} s (\`bench/run.sh $ROUNDS $SECS\`)."
  echo
  echo "Origin: nginx, 1 worker, \`/1k\` and \`/64k\` with \`Cache-Control: public, max-age=3600\`, \`/nostore/1k\` and \`/1m\` (1 MiB) with"
  echo "\`no-store\`. nginx proxy: 1 worker, upstream keepalive 64, HTTP/1.1 to the origin, \`proxy_cache\` and temp files in /dev/shm,"
  echo "\`proxy_cache_lock on\`, TLS 1.2/1.3 with \`ssl_session_cache shared:SSL:10m\` and session tickets, access log off. gatehouse: one"
  echo "process, one site on HTTP and HTTPS (\`tls = \"manual\"\`, the same ECDSA P-256 certificate), \`[cache]\` (max_size 256MiB), access"
  echo "log ${GH_ACCESS_LOG:-false}. Both have the cache off on the \`no-store\` paths (\`location\` / \`[[paths]]\` with \`[paths.cache] enabled = false\`):"
  echo "with it on, nginx's \`proxy_cache_lock\` holds concurrent requests for a URL whose response turns out uncacheable and wakes"
  echo "them on a 500 ms timer."
  echo
  echo "| scenario | nginx req/s | gatehouse req/s | ratio | nginx p50 / p99 (ms) | gatehouse p50 / p99 (ms) | target |"
  echo "| --- | ---: | ---: | ---: | --- | --- | --- |"
  for s in "${SCENARIOS[@]}"; do
    n="$WORK/nginx-$s.txt" g="$WORK/gh-$s.txt"
    n_rps=$(col "$n" 1) g_rps=$(col "$g" 1)
    ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", n ? g/n : 0}')
    if [ "$s" = full ]; then lat_n="mean $(col "$n" 2)" lat_g="mean $(col "$g" 2)"; else lat_n="$(col "$n" 2) / $(col "$n" 3)" lat_g="$(col "$g" 2) / $(col "$g" 3)"; fi
    [ "$s" = stream ] && { n_rps="$n_rps ($(col "$n" 8) MiB/s)"; g_rps="$g_rps ($(col "$g" 8) MiB/s)"; }
    tgt=${TARGET[$s]}
    [ -n "$tgt" ] && tgt="≥ ${tgt}×: $(yesno "$(awk -v r="$ratio" -v t="$tgt" 'BEGIN {print (r >= t)}')")"
    echo "| ${TITLE[$s]} | $n_rps | $g_rps | **$ratio** | $lat_n | $lat_g | ${tgt:-—} |"
  done
  # Rows that other benches (bench/static.sh, cache-disk.sh, scale.sh) added from runs of their own stay, as they were.
  [ -n "$KEPT_ROWS" ] && printf '%s\n' "$KEPT_ROWS"
  echo
  printf "Server CPU per request (µs, nginx worker / gatehouse process, medians):"
  for s in "${SCENARIOS[@]}"; do printf " %s %s / %s;" "${SHORT[$s]}" "$(col "$WORK/nginx-$s.txt" 4)" "$(col "$WORK/gh-$s.txt" 4)"; done | sed 's/;$/./'
  echo
  echo "Non-2xx responses and socket errors over all rounds: nginx $(errs nginx SCENARIOS); gatehouse $(errs gh SCENARIOS)."
  echo
  echo "**Memory.** gatehouse RSS: $(mib "$GH_IDLE_KIB") MiB idle (after start, before any load), peak $(mib "$GH_PEAK_KIB") MiB over the scenarios"
  echo "(VmHWM), $(mib "$GH_END_KIB") MiB at their end, peak $(mib "$GH_PEAK2_KIB") MiB after the reloads with 1,000 route files."
  echo "nginx proxy worker, for reference: $(mib "$NGX_IDLE_KIB") MiB idle, peak $(mib "$NGX_PEAK_KIB") MiB (it includes the shared cache and TLS session zones it touched)."
  echo "gatehouse cache over the run: $CACHE_LINE."
  echo "Targets: idle under 60 MiB per process: $(yesno "$(awk -v k="$GH_IDLE_KIB" 'BEGIN {print (k < 60*1024)}')"); under load under 150 MiB plus the"
  echo "cache's size at the end: $(yesno "$(awk -v k="$GH_PEAK_KIB" -v c="$CACHE_BYTES" 'BEGIN {print (k*1024 < 150*1048576 + c)}')")."
  echo
  echo "**Start.** Spawn to the first 200 on a proxied URL (a new upstream connection included): median $sorted_start ms of 5 starts"
  echo "(${START_MS[*]:1} ms), after a first start of ${START_MS[0]} ms that also made the internal CA and the fallback certificate; $GH_WHAT. Target under 150 ms: $(yesno "$(awk -v m="$sorted_start" 'BEGIN {print (m < 150)}')")."
  echo
  echo "**All cores: nginx \`worker_processes $NPROC\` against gatehouse \`workers = $NPROC\`** (this machine's $NPROC cores). A second nginx proxy,"
  echo "configured as above but with $NPROC workers and \`reuseport\` on its listeners, and a second gatehouse with \`workers = $NPROC\` (a supervisor"
  echo "and $NPROC worker processes on \`SO_REUSEPORT\` listeners, each worker with its own cache), the same site, the same origin (still 1"
  echo "worker). For each scenario a ${WARM} s warm-up of each, then $ROUNDS interleaved round(s) of ${SECS} s, nginx first in odd rounds and"
  echo "gatehouse first in even ones; medians; CPU summed over all processes of each (nginx's master, workers and cache processes;"
  echo "gatehouse's supervisor and workers). The load generator and the origin share the same $NPROC cores, so neither server has them to itself."
  echo
  echo "| scenario | nginx req/s | gatehouse req/s | ratio | nginx p50 / p99 (ms) | gatehouse p50 / p99 (ms) | CPU µs/request nginx / gatehouse |"
  echo "| --- | ---: | ---: | ---: | --- | --- | --- |"
  for s in "${ALL[@]}"; do
    n="$WORK/nginx_n-$s.txt" g="$WORK/gatehouse_n-$s.txt"
    n_rps=$(col "$n" 1) g_rps=$(col "$g" 1)
    echo "| ${TITLE[$s]} | $n_rps | $g_rps | **$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", n ? g/n : 0}')** | $(col "$n" 2) / $(col "$n" 3) | $(col "$g" 2) / $(col "$g" 3) | $(col "$n" 4) / $(col "$g" 4) |"
  done
  echo
  echo "Non-2xx responses and socket errors over all rounds: nginx $(errs nginx_n ALL); gatehouse $(errs gatehouse_n ALL)."
  echo "RSS at the end: gatehouse $(mib "$WN_RSS_KIB") MiB (supervisor and $NPROC workers), nginx $(mib "$NGX_N_RSS_KIB") MiB ($NPROC workers)."
  echo
  echo "**Reload with 1,000 route files** (1,000 sites, each proxying to the origin, plus the bench site):"
  echo "- the reload that adds them: $RL_FIRST ms (gatehouse's \`config reloaded\` log line), $RL_WALL ms wall time of \`gatehouse reload\`"
  echo "  (process start, SIGHUP, polling the status file every 25 ms)."
  echo "- under load (\`wrk -t2 -c64\`, \`/nostore/1k\`, $RL_PAIRS pairs of ${RL_SECS} s runs, one without reloads then one with a SIGHUP every ${RL_EVERY} s,"
  echo "  each adding or removing one route file): $RL_DONE reloads of $sent signalled, $RL_REJECTED rejected, median $RL_MED ms, max $RL_MAX ms."
  echo "- target < 100 ms, on the median of all $((RL_DONE + 1)) reloads ($RL_ALL ms): $(yesno "$(awk -v m="$RL_ALL" 'BEGIN {print (m < 100)}')")."
  echo "- p99 latency: $b99 ms without reloads, $l99 ms with them ($(awk -v a="$l99" -v b="$b99" 'BEGIN {printf "%.2f", b ? a/b : 0}')×), medians over the pairs;"
  echo "  target ≤ 2×: $(yesno "$(awk -v a="$l99" -v b="$b99" 'BEGIN {print (a <= 2*b)}')"). Max latency: $(col "$WORK/rl-base.txt" 9) ms without reloads, $(col "$WORK/rl-load.txt" 9) ms with them."
  echo "  Non-2xx responses and socket errors during the reloads: ${rl_errs% *} and ${rl_errs#* }."
  echo
  echo "**Method notes.**"
  echo "- The new-connection row sends \`Connection: close\`, so every request opens a new TCP and TLS connection (new connections per"
  echo "  request, from the kernel's TcpPassiveOpens, are in the rounds below). wrk keeps the TLS session across reconnects, so these are"
  echo "  **resumed** handshakes: this run's probe against nginx (\`\$ssl_session_reused\`) saw $PROBE."
  echo "  Session resumption offered (openssl s_client -sess_out/-sess_in): nginx $N_RESUMES, gatehouse $G_RESUMES. wrk starts a request's"
  echo "  clock after connect and handshake, so p50/p99 there leave the handshake out; its cost shows in req/s and CPU."
  echo "- The full-handshake row: $PAR parallel \`openssl s_time -new -time ${SECS}\` clients (a new session every time, handshake then close,"
  echo "  no HTTP request), connections per second of wall time; latency is the mean per connection; s_time gives no percentiles."
  echo "  On $(nproc) cores the client (OpenSSL in wrk and s_time) takes most of the CPU in the handshake rows: compare server CPU there."
  echo "- The HTTPS wrk rows ask for \`https://$HOST:PORT/…\` with a wrk script that connects to 127.0.0.1, so SNI and Host are $HOST"
  echo "  for both servers, as from a browser. (gatehouse's front end answers 421 to every request on a connection whose SNI names no"
  echo "  site; with SNI 127.0.0.1 its handshake gets the certificate ${G_CERT:-?}.) s_time sends no SNI: gatehouse then"
  echo "  shakes hands with that fallback certificate (ECDSA P-256 too, its internal CA in the chain), nginx with the $HOST one."
  echo "- The download row's MiB/s is wrk's Transfer/sec (headers included)."
  echo
  echo "Rerun: \`npm run bench\` or \`bash bench/run.sh [ROUNDS] [SECONDS]\` (needs Debian's nginx, wrk, openssl and curl);"
  echo "\`GH_ACCESS_LOG=true\` measures gatehouse with its access log on."
  echo
  echo "## Rounds"
  echo
  echo "Per run: req/s, p50 ms, p99 ms, server CPU µs per request, new connections per request (kernel-wide TcpPassiveOpens),"
  echo "non-2xx responses, socket errors, MiB/s, max latency ms."
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "${TITLE[$s]}:"
    echo
    paste -d'|' "$WORK/nginx-$s.txt" "$WORK/gh-$s.txt" | awk -F'|' '{print "- nginx " $1 " · gatehouse " $2}'
  done
  for s in "${ALL[@]}"; do
    echo
    echo "All cores, ${TITLE[$s]}:"
    echo
    paste -d'|' "$WORK/nginx_n-$s.txt" "$WORK/gatehouse_n-$s.txt" | awk -F'|' '{print "- " (NR % 2 ? "nginx first" : "gatehouse first") ": nginx " $1 " · gatehouse " $2}'
  done
  echo
  echo "Reload pairs (gatehouse only):"
  echo
  paste -d'|' "$WORK/rl-base.txt" "$WORK/rl-load.txt" | awk -F'|' '{print "- without reloads " $1 " · with reloads " $2}'
  echo "- reload durations (ms): $(tr '\n' ' ' <<< "$RL_MS")"
} > bench/RESULTS.md
cat bench/RESULTS.md
echo "bench/run.sh: done in ${ELAPSED} s" >&2
