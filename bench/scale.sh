#!/usr/bin/env bash
# Cost as the work grows (issue 18, item 4), gatehouse `workers = 1` against nginx `worker_processes 1`, same run, loopback:
#  1. 9,000 idle keep-alive connections (each opened, one proxied GET answered, then left idle): RSS of the serving process
#     before, after they opened and after IDLE s of idleness; KB per connection; CPU while they sit idle (and with none open).
#  2. 1,000 open WebSockets through each proxy to a Bun WebSocket echo origin: the same figures, then one message round trip
#     on every one of them.
#  3. Proxied throughput (wrk -c64, 1 KB uncacheable, keep-alive) with 1 site against 1,000 sites (route files / server blocks,
#     distinct hosts) over 100 upstream pools (100 origin ports), the Host header picked at random from all the sites per request.
# Parts 1 and 2 start each proxy afresh for every measurement (so one measurement's garbage is not the next one's baseline);
# rounds interleave the servers, nginx first in odd rounds. Access logs off on both. The clients (bench/scale-client.ts) spread
# their connections over 127.0.0.2–127.0.0.201, so gatehouse runs with its default [limits] (max_connections 20000,
# max_connections_per_client 256: 45 connections per address here). Writes bench/SCALE.md and rows of bench/RESULTS.md.
# Usage: bench/scale.sh [ROUNDS] [SECONDS]   (defaults 3 and 5; SECONDS is each wrk run of part 3). Needs nginx, wrk, curl, ss.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-3} SECS=${2:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/scale.sh [ROUNDS] [SECONDS] (positive integers)" >&2; exit 2; }
N_IDLE=${N_IDLE:-9000} N_WS=${N_WS:-1000} IDLE=${IDLE_SECS:-10} BASE=${BASE_SECS:-10} SETTLE=3 REST=2 WARM_CONNS=256 OPEN_CONC=64 CONNS=64 N_SITES=1000 N_POOLS=100
WARM=$(( SECS < 2 ? SECS : 2 ))
HOST=bench.test
BUN=node_modules/.bin/bun
BUN_PORT=18311 WS_PORT=18301 NGX_PORT=18302 GH_PORT=18303 GH_ADMIN=18304 NGX1_PORT=18305 NGXK_PORT=18306 GH1_PORT=18307 GH1_ADMIN=18308 GHK_PORT=18309 GHK_ADMIN=18310
ORIGIN_BASE=18400   # the origin listens on ORIGIN_BASE … ORIGIN_BASE+99, one port per upstream pool
[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk curl ss; do command -v "$tool" > /dev/null || { echo "bench/scale.sh: $tool is missing" >&2; exit 1; }; done
for port in $BUN_PORT $WS_PORT $NGX_PORT $GH_PORT $GH_ADMIN $NGX1_PORT $NGXK_PORT $GH1_PORT $GH1_ADMIN $GHK_PORT $GHK_ADMIN $ORIGIN_BASE $((ORIGIN_BASE + N_POOLS - 1)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/scale.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
(( $(ulimit -n) >= N_IDLE + 1000 )) || { echo "bench/scale.sh: ulimit -n is $(ulimit -n), below $((N_IDLE + 1000))" >&2; exit 1; }
T0=$(date +%s)
WORK=$(mktemp -d /tmp/gatehouse-scale.XXXXXX); chmod 755 "$WORK"   # nginx workers run as www-data
pids=() SRV="" CL_PID=""
stop_pid() { local p=$1; kill "$p" 2> /dev/null || true; for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done; kill -9 "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; }
cleanup() {
  exec 5>&- 2> /dev/null || true
  local p
  for p in $CL_PID $SRV "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in $CL_PID $SRV "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
  echo "bench/scale.sh: $*" >&2
  for f in "$WORK"/*/error.log "$WORK"/*/gatehouse.log "$WORK/client.err" "$WORK/echo.log"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}

echo "building the binary" >&2
timeout 600 "$BUN" build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig \
  --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$WORK/gatehouse" > "$WORK/build.log" 2>&1 || die "cannot build: $(tail -5 "$WORK/build.log")"

# The origin: nginx, 1 worker, on 100 ports; /nostore/1k is 1 KB with no-store; X-Port says which port (pool) answered.
mkdir -p "$WORK/www/nostore" "$WORK/origin" "$WORK/res"
head -c 1024 /dev/zero | tr '\0' x > "$WORK/www/nostore/1k"
listens=$(for i in $(seq 0 $((N_POOLS - 1))); do printf 'listen 127.0.0.1:%d; ' $((ORIGIN_BASE + i)); done)
nginx_conf "$WORK/origin" "server { $listens root $WORK/www;
    location / { add_header Cache-Control no-store; add_header X-Port \$server_port; } }"
sed -i 's/worker_connections 4096/worker_connections 16384/' "$WORK/origin/nginx.conf"
nginx -c "$WORK/origin/nginx.conf" & pids+=($!)
(cd "$WORK" && exec "$OLDPWD/$BUN" "$OLDPWD/bench/scale-client.ts" echo $WS_PORT > "$WORK/echo.log" 2>&1) & pids+=($!)
for _ in $(seq 50); do curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$ORIGIN_BASE/nostore/1k" && curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$WS_PORT/" && break; sleep 0.1; done
curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$((ORIGIN_BASE + N_POOLS - 1))/nostore/1k" || die "the origin does not answer"
curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$WS_PORT/" || die "the WebSocket echo origin does not answer"

# Configs of the proxies. nginx: worker_connections 20000 (gatehouse's max_connections), upgrade headers on /ws.
gh_conf() { # $1 dir, $2 http port, $3 admin port: config.toml with default [limits], access log off
  mkdir -p "$1/routes"
  printf 'routes_dir = "routes"\npid_file = "gatehouse.pid"\n[listen]\nhttp = "127.0.0.1:%s"\nadmin = "127.0.0.1:%s"\n[log]\naccess = false\n' "$2" "$3" > "$1/config.toml"
}
ngx_proxy() { # $1 dir, $2 http-level config
  mkdir -p "$1"; nginx_conf "$1" "$2"
  sed -i 's/worker_connections 4096/worker_connections 20000/' "$1/nginx.conf"
}
ngx_proxy "$WORK/ngx" "upstream origin { server 127.0.0.1:$ORIGIN_BASE; keepalive 64; }
  upstream wsorigin { server 127.0.0.1:$WS_PORT; }
  server { listen 127.0.0.1:$NGX_PORT; server_name $HOST; proxy_http_version 1.1;
    location / { proxy_pass http://origin; proxy_set_header Connection \"\"; }
    location /ws { proxy_pass http://wsorigin; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade;
      proxy_read_timeout 300s; proxy_send_timeout 300s; } }"
gh_conf "$WORK/gh" $GH_PORT $GH_ADMIN
printf 'hosts = ["%s", "127.0.0.1"]\nupstreams = ["http://127.0.0.1:%s"]\n[[paths]]\nprefix = "/ws"\nupstreams = ["http://127.0.0.1:%s"]\n' \
  "$HOST" $ORIGIN_BASE $WS_PORT > "$WORK/gh/routes/bench.toml"
# Part 3: one site and one pool, against 1,000 sites h0.test … h999.test over 100 pools (site i → origin port i mod 100).
ngx_sites() { # $1 sites, $2 pools, $3 port
  local i
  for i in $(seq 0 $(($2 - 1))); do printf 'upstream p%d { server 127.0.0.1:%d; keepalive 64; }\n' "$i" $((ORIGIN_BASE + i)); done
  echo "server_names_hash_max_size 4096; server_names_hash_bucket_size 64; proxy_http_version 1.1; proxy_set_header Connection \"\";"
  for i in $(seq 0 $(($1 - 1))); do printf 'server { listen 127.0.0.1:%d; server_name h%d.test; location / { proxy_pass http://p%d; } }\n' "$3" "$i" $((i % $2)); done
}
ngx_proxy "$WORK/ngx1" "$(ngx_sites 1 1 $NGX1_PORT)"
ngx_proxy "$WORK/ngxk" "$(ngx_sites $N_SITES $N_POOLS $NGXK_PORT)"
gh_sites() { # $1 dir, $2 sites, $3 pools
  local i
  for i in $(seq 0 $(($2 - 1))); do printf 'hosts = ["h%d.test"]\nupstreams = ["http://127.0.0.1:%d"]\n' "$i" $((ORIGIN_BASE + i % $3)) > "$1/routes/h$i.toml"; done
}
gh_conf "$WORK/gh1" $GH1_PORT $GH1_ADMIN; gh_sites "$WORK/gh1" 1 1
gh_conf "$WORK/ghk" $GHK_PORT $GHK_ADMIN; gh_sites "$WORK/ghk" $N_SITES $N_POOLS
for d in gh gh1 ghk; do (cd "$WORK/$d" && timeout 60 ../gatehouse check -c config.toml > check.log 2>&1) || die "gatehouse check refused $d: $(tail -3 "$WORK/$d/check.log")"; done
for d in ngx ngx1 ngxk; do nginx -t -c "$WORK/$d/nginx.conf" > "$WORK/$d/t.log" 2>&1 || die "nginx -t refused $d: $(tail -3 "$WORK/$d/t.log")"; done

# Starting and measuring one proxy. SRV is its pid (nginx: the master), MEM_PID the serving process (nginx: its worker).
start_srv() { # $1 ngx | gh (part 1-2 config) or a part-3 dir, $2 port: start, wait for a 200 through it
  local d=$WORK/$1
  if [[ $1 == ngx* ]]; then
    nginx -c "$d/nginx.conf" & SRV=$!
  elif [ "$1" = bun ]; then
    "$BUN" bench/scale-floor.ts "$2" & SRV=$!
  else
    (cd "$d" && exec ../gatehouse run -c config.toml >> gatehouse.log 2>&1) & SRV=$!
  fi
  local host=$HOST; [[ $1 == ngx1 || $1 == ngxk || $1 == gh1 || $1 == ghk ]] && host=h0.test
  for _ in $(seq 100); do curl -sf --max-time 1 -o /dev/null -H "Host: $host" "http://127.0.0.1:$2/nostore/1k" && break; sleep 0.1; done
  curl -sf --max-time 1 -o /dev/null -H "Host: $host" "http://127.0.0.1:$2/nostore/1k" || die "$1 does not answer on $2"
  MEM_PID=$SRV
  if [[ $1 == ngx* ]]; then MEM_PID=$(pgrep -P "$SRV" -f 'worker process' | head -1); [ -n "$MEM_PID" ] || die "no nginx worker for $1"; fi
}
stop_srv() { stop_pid "$SRV"; SRV=""; }
rss_kib() { local t=0 p; for p in $(tree_pids "$1"); do t=$(( t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2> /dev/null || echo 0) )); done; echo $t; }
# CPU from /proc/PID/stat (utime + stime: the threads that exited included, which summing /proc/PID/task/*/schedstat misses:
# Bun's helper threads come and go, and such a sum can run backwards), in clock ticks (10 ms): ms per second over a window.
ms_per_s() { awk -v a="$1" -v b="$2" -v s="$3" -v t="$TICK" 'BEGIN {printf "%.1f", (b - a) * 1000 / t / s}'; }
upstream_conns() { # $1 a pid: its established TCP connections to the origin's ports or the WebSocket origin
  ss -Htnp state established | grep "pid=$1," | awk -v lo=$ORIGIN_BASE -v hi=$((ORIGIN_BASE + N_POOLS - 1)) -v ws=$WS_PORT '{n = split($4, a, ":"); p = a[n]} (p >= lo && p <= hi) || p == ws {c++} END {print c + 0}'
}
jf() { grep -o "\"$2\":[0-9]*" <<< "$1" | head -1 | cut -d: -f2; }   # a number field of a JSON line

# The client: a background bun process reading commands from a fifo on fd 5, writing JSON lines to client.out.
client_lines() { # $1 lines to wait for, $2 seconds
  local end=$(( $(date +%s) + $2 ))
  while [ "$(wc -l < "$WORK/client.out")" -lt "$1" ]; do
    kill -0 "$CL_PID" 2> /dev/null || die "the client exited: $(tail -3 "$WORK/client.err")"
    [ "$(date +%s)" -lt "$end" ] || die "the client did not answer within $2 s"
    sleep 0.1
  done
}
client_start() { # $1 http | ws, $2 port, $3 path, $4 connections
  rm -f "$WORK/ctl"; mkfifo "$WORK/ctl"; : > "$WORK/client.out"
  "$BUN" bench/scale-client.ts "$1" "$2" "$HOST" "$3" "$4" $OPEN_CONC < "$WORK/ctl" > "$WORK/client.out" 2>> "$WORK/client.err" & CL_PID=$!
  exec 5> "$WORK/ctl"
  client_lines 1 120
}
client_cmd() { local n; n=$(( $(wc -l < "$WORK/client.out") + 1 )); echo "$1" >&5; client_lines $n 60; tail -1 "$WORK/client.out"; }
client_stop() { echo quit >&5 2> /dev/null || true; exec 5>&-; stop_pid "$CL_PID"; CL_PID=""; }

# One measurement of part 1 or 2 on a fresh proxy; appends a record to res/$2-$1:
# rss_before rss_open rss_idle rss_closed (KiB), cpu ms/s with none open, cpu ms/s while idle, opened ok, failed,
# closed by the server while idle, probe ok, probe failed, upstream connections after the idle time.
measure() { # $1 ngx | gh | bun (Bun's floor, http only), $2 http | ws
  local port=$NGX_PORT n=$N_IDLE path=/nostore/1k r0 r1 r2 r3 c0 c1 c2 c3 open st probe up
  [ "$1" = gh ] && port=$GH_PORT
  [ "$1" = bun ] && port=$BUN_PORT
  [ "$2" = ws ] && n=$N_WS path=/ws
  start_srv "$1" $port
  # Warm-up: $WARM_CONNS connections of one proxied GET each, then closed (the request path run, little garbage left behind).
  client_start http $port /nostore/1k $WARM_CONNS; client_stop
  sleep $REST
  r0=$(rss_kib "$MEM_PID"); c0=$(cpu_ticks "$SRV"); sleep $BASE; c1=$(cpu_ticks "$SRV")
  client_start "$2" $port $path $n; open=$(tail -1 "$WORK/client.out")
  r1=$(rss_kib "$MEM_PID")
  sleep $SETTLE   # the opening's aftermath settles
  c2=$(cpu_ticks "$SRV"); sleep $IDLE; c3=$(cpu_ticks "$SRV")
  r2=$(rss_kib "$MEM_PID"); up=$(upstream_conns "$MEM_PID")
  st=$(client_cmd state)
  probe=$(client_cmd probe)
  client_stop; sleep 2
  r3=$(rss_kib "$MEM_PID")
  kill -0 "$SRV" 2> /dev/null || die "$1 died during the $2 measurement"
  stop_srv
  echo "$r0 $r1 $r2 $r3 $(ms_per_s $c0 $c1 $BASE) $(ms_per_s $c2 $c3 $IDLE) $(jf "$open" ok) $(jf "$open" failed) $(jf "$st" closed_by_server) $(jf "$probe" ok) $(jf "$probe" failed) $up" >> "$WORK/res/$2-$1"
  echo "round $r $2 $1: $(tail -1 "$WORK/res/$2-$1")" >&2
}

# nginx allocates its connection slots (worker_connections) at start: its "before" already holds them. How much that is:
start_srv ngx $NGX_PORT; NGX_SLOTS_KIB=$(rss_kib "$MEM_PID"); stop_srv
sed 's/worker_connections 20000/worker_connections 512/' "$WORK/ngx/nginx.conf" > "$WORK/ngx/small.conf"
nginx -c "$WORK/ngx/small.conf" & SRV=$!; sleep 1; NGX_SMALL_KIB=$(rss_kib "$(pgrep -P "$SRV" -f 'worker process' | head -1)"); stop_srv

for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order="ngx gh"; else order="gh ngx"; fi
  for kind in http ws; do for s in $order; do measure "$s" "$kind"; done; done
  measure bun http
done

# Part 3: all four proxies up, each checked to route by Host (X-Port names the pool that answered).
start_srv ngx1 $NGX1_PORT; P_NGX1=$SRV; pids+=($SRV)
start_srv ngxk $NGXK_PORT; P_NGXK=$SRV; pids+=($SRV)
t=$EPOCHREALTIME; start_srv gh1 $GH1_PORT; P_GH1=$SRV; pids+=($SRV)
t=$EPOCHREALTIME; start_srv ghk $GHK_PORT; P_GHK=$SRV; pids+=($SRV); GHK_START_MS=$(( (${EPOCHREALTIME/./} - ${t/./}) / 1000 ))
SRV=""
for port in $NGXK_PORT $GHK_PORT; do
  for i in 0 1 537 999; do
    got=$(curl -s --max-time 2 -o /dev/null -D - -H "Host: h$i.test" "http://127.0.0.1:$port/nostore/1k" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-port" {print $2}')
    [ "$got" = $((ORIGIN_BASE + i % N_POOLS)) ] || die "port $port routed h$i.test to origin port '${got}', not $((ORIGIN_BASE + i % N_POOLS))"
  done
done
hosts_lua() { # $1 file, $2 sites: each request names one of h0.test … h<N-1>.test, at random
  cat > "$1" <<LUA
local n, reqs = $2, {}
init = function(args)
  for k = 0, n - 1 do reqs[k + 1] = wrk.format("GET", "/nostore/1k", {Host = "h" .. k .. ".test"}) end
  math.randomseed(os.time())
end
request = function() return reqs[math.random(n)] end
LUA
}
hosts_lua "$WORK/one.lua" 1; hosts_lua "$WORK/many.lua" $N_SITES
# Contestants: 1 site (ngx1, gh1); 1,000 sites with every request for h0.test (ngxk1, ghk1: the lookup in a table of 1,000, one
# pool busy); 1,000 sites with the Host at random (ngxk, ghk: the lookup and 100 pools busy). Each record gets a 10th field:
# the proxy's connections to the origin right after the run.
P_NGXK_W=$(pgrep -P "$P_NGXK" -f 'worker process' | head -1) P_NGX1_W=$(pgrep -P "$P_NGX1" -f 'worker process' | head -1)
declare -A TP=([ngx1]=$P_NGX1 [ngxk1]=$P_NGXK [ngxk]=$P_NGXK [gh1]=$P_GH1 [ghk1]=$P_GHK [ghk]=$P_GHK)
declare -A TW=([ngx1]=$P_NGX1_W [ngxk1]=$P_NGXK_W [ngxk]=$P_NGXK_W [gh1]=$P_GH1 [ghk1]=$P_GHK [ghk]=$P_GHK)
declare -A TPORT=([ngx1]=$NGX1_PORT [ngxk1]=$NGXK_PORT [ngxk]=$NGXK_PORT [gh1]=$GH1_PORT [ghk1]=$GHK_PORT [ghk]=$GHK_PORT)
declare -A TLUA=([ngx1]=one [ngxk1]=one [ngxk]=many [gh1]=one [ghk1]=one [ghk]=many)
THR="ngx1 ngxk1 ngxk gh1 ghk1 ghk"
thr() { echo "$(run_wrk "${TP[$1]}" "$2" $CONNS "http://127.0.0.1:${TPORT[$1]}/nostore/1k" -s "$WORK/${TLUA[$1]}.lua") $(upstream_conns "${TW[$1]}")"; }
ORDERS=("ngx1 ngxk1 ngxk gh1 ghk1 ghk" "ghk ghk1 gh1 ngxk ngxk1 ngx1" "ngxk ngx1 ngxk1 ghk gh1 ghk1" "gh1 ghk ghk1 ngx1 ngxk ngxk1")
for s in $THR; do thr $s "$WARM" > /dev/null; : > "$WORK/res/thr-$s"; done
for r in $(seq "$ROUNDS"); do
  for s in ${ORDERS[$(((r - 1) % 4))]}; do thr $s "$SECS" >> "$WORK/res/thr-$s"; echo "round $r throughput $s: $(tail -1 "$WORK/res/thr-$s")" >&2; done
done
for s in $THR; do kill -0 "${TP[$s]}" 2> /dev/null || die "$s died during the throughput runs"; done
GHK_RSS=$(rss_kib "$P_GHK") GH1_RSS=$(rss_kib "$P_GH1")
NGXK_RSS=$(rss_kib "$(pgrep -P "$P_NGXK" -f 'worker process' | head -1)") NGX1_RSS=$(rss_kib "$(pgrep -P "$P_NGX1" -f 'worker process' | head -1)")
GH_LOG_ERRORS=$(cat "$WORK"/gh*/gatehouse.log | grep -c '"level":"\(error\|fatal\)"' || true)
GH_LOG_WARNS=$(cat "$WORK"/gh*/gatehouse.log | grep -c '"level":"warn"' || true)
NGX_LOG_ERRORS=$(cat "$WORK"/ngx*/error.log 2> /dev/null | grep -c '\[\(error\|crit\|alert\|emerg\)\]' || true)
ELAPSED=$(( $(date +%s) - T0 ))

# Figures.
R=$WORK/res
kb_per() { # $1 file, $2 column of the "after" RSS, $3 connections: median over rounds of (after - before) / n, KB
  awk -v c="$2" -v n="$3" '{printf "%.2f\n", ($c - $1) / n}' "$1" | median
}
med() { col "$1" "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
yesno() { awk -v c="$1" 'BEGIN {print (c) ? "met" : "**not met**"}'; }
sum() { awk -v c="$2" '{s += $c} END {print s + 0}' "$1"; }
for k in http ws; do
  n=$N_IDLE; [ $k = ws ] && n=$N_WS
  for s in ngx gh $([ $k = http ] && echo bun); do
    f=$R/$k-$s
    declare "${k}_${s}_r0=$(med "$f" 1)" "${k}_${s}_r1=$(med "$f" 2)" "${k}_${s}_r2=$(med "$f" 3)" "${k}_${s}_r3=$(med "$f" 4)"
    declare "${k}_${s}_kbopen=$(kb_per "$f" 2 $n)" "${k}_${s}_kb=$(kb_per "$f" 3 $n)" "${k}_${s}_kbclosed=$(kb_per "$f" 4 $n)"
    declare "${k}_${s}_base=$(med "$f" 5)" "${k}_${s}_idle=$(med "$f" 6)" "${k}_${s}_up=$(med "$f" 12)"
    declare "${k}_${s}_fail=$(sum "$f" 8)" "${k}_${s}_cbs=$(sum "$f" 9)" "${k}_${s}_pok=$(sum "$f" 10)" "${k}_${s}_pfail=$(sum "$f" 11)"
  done
done
HTTP_RATIO=$(ratio "$http_gh_kb" "$http_ngx_kb") FLOOR_RATIO=$(ratio "$http_bun_kb" "$http_ngx_kb") OWN_KB=$(awk -v a="$http_gh_kb" -v b="$http_bun_kb" 'BEGIN {printf "%.2f", a - b}') WS_RATIO=$(ratio "$ws_gh_kb" "$ws_ngx_kb")
for s in $THR; do declare "rps_$s=$(med "$R/thr-$s" 1)" "cpu_$s=$(med "$R/thr-$s" 4)" "lat_$s=$(med "$R/thr-$s" 2) / $(med "$R/thr-$s" 3)" "new_$s=$(med "$R/thr-$s" 5)" "up_$s=$(med "$R/thr-$s" 10)"; done
K_NGX=$(ratio "$rps_ngxk" "$rps_ngx1") K_GH=$(ratio "$rps_ghk" "$rps_gh1")
K1_NGX=$(ratio "$rps_ngxk1" "$rps_ngx1") K1_GH=$(ratio "$rps_ghk1" "$rps_gh1")
KC_NGX=$(ratio "$cpu_ngxk" "$cpu_ngx1") KC_GH=$(ratio "$cpu_ghk" "$cpu_gh1") K1C_NGX=$(ratio "$cpu_ngxk1" "$cpu_ngx1") K1C_GH=$(ratio "$cpu_ghk1" "$cpu_gh1")
paired() { # $1 $2 contestants, $3 field (1 req/s, 4 CPU µs/req): the median over rounds of each round's own $1 ÷ $2, and their range
  paste -d' ' "$R/thr-$1" "$R/thr-$2" | awk -v f="$3" '{printf "%.2f\n", $(f + 10) ? $f / $(f + 10) : 0}' | sort -n |
    awk '{a[NR] = $1} END {printf "%.2f (%s–%s)", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[1], a[NR]}'
}
PR_NGXK=$(paired ngxk ngx1 1) PR_GHK=$(paired ghk gh1 1) PR_NGXK1=$(paired ngxk1 ngx1 1) PR_GHK1=$(paired ghk1 gh1 1)
PC_NGXK=$(paired ngxk ngx1 4) PC_GHK=$(paired ghk gh1 4) PC_NGXK1=$(paired ngxk1 ngx1 4) PC_GHK1=$(paired ghk1 gh1 4)
G1=$(ratio "$rps_gh1" "$rps_ngx1") GK=$(ratio "$rps_ghk" "$rps_ngxk")
THR_BAD=$(cat "$R"/thr-* | awk '{n += $6; e += $7} END {print n + 0 " non-2xx, " e + 0 " socket errors"}')
SLOT_B=$(awk -v a="$NGX_SLOTS_KIB" -v b="$NGX_SMALL_KIB" 'BEGIN {printf "%.0f", (a - b) * 1024 / (20000 - 512)}')
HTTP_NGX_SLOT_KB=$(awk -v k="$http_ngx_kb" -v b="$SLOT_B" 'BEGIN {printf "%.2f", k + b / 1024}')
HTTP_RATIO_SLOT=$(ratio "$http_gh_kb" "$HTTP_NGX_SLOT_KB") HTTP_RATIO_OPEN=$(ratio "$http_gh_kbopen" "$http_ngx_kbopen")
row() { # $1 label, $2 kind
  local k=$1 s
  for s in ngx gh $([ "$k" = http ] && echo bun); do
    local p="${k}_${s}"; local r0=${p}_r0 r1=${p}_r1 r2=${p}_r2 r3=${p}_r3 kbo=${p}_kbopen kb=${p}_kb kbc=${p}_kbclosed b=${p}_base i=${p}_idle u=${p}_up
    echo "| $(case $s in ngx) echo "nginx worker" ;; gh) echo "gatehouse" ;; bun) echo "Bun's floor (bench/scale-floor.ts)" ;; esac) | $(mib ${!r0}) | $(mib ${!r1}) | $(mib ${!r2}) | $(mib ${!r3}) | ${!kbo} | **${!kb}** | ${!kbc} | ${!b} | ${!i} | ${!u} |"
  done
}
{
  echo "# Cost as the work grows: idle connections, WebSockets, 1,000 sites (issue 18, item 4)"
  echo
  echo "Same run, $(date -u '+%Y-%m-%d %H:%M') UTC; gatehouse \`$(git rev-parse --short HEAD)\` (working tree, compiled binary, \`workers = 1\`,"
  echo "access log off, default \`[limits]\`) against $(nginx -v 2>&1 | sed 's/.*: //') (\`worker_processes 1\`, \`worker_connections 20000\`, access log off);"
  echo "$(nproc) shared cores, $(uname -sr), Bun $("$BUN" --version), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'). Loopback only. \`bench/scale.sh $ROUNDS $SECS\`, $ELAPSED s."
  echo
  echo "## Method"
  echo
  echo "- **Idle keep-alive connections.** A client (bench/scale-client.ts, Bun, \`node:net\`) opens $N_IDLE connections, $OPEN_CONC at a"
  echo "  time, spread over the source addresses 127.0.0.2–127.0.0.201 ($((N_IDLE / 200)) per address, under gatehouse's default"
  echo "  \`max_connections_per_client\` of 256); on each it sends one GET of \`/nostore/1k\`, proxied to an nginx origin (1 KB, \`no-store\`),"
  echo "  reads the answer and leaves the connection open and silent. RSS (VmRSS) of the serving process — nginx's worker, the gatehouse"
  echo "  process — before (after a warm-up of $WARM_CONNS such connections, closed again, and ${REST} s of rest), right after the last connection's"
  echo "  answer, after ${SETTLE} + ${IDLE} s of idleness, and 2 s after the client closed them all. KB per connection = (RSS − RSS before) ÷ $N_IDLE."
  echo "  CPU (utime + stime from \`/proc/PID/stat\`, every thread; nginx: master and worker; 10 ms ticks) as ms of CPU per second of wall"
  echo "  time (1 ms/s = 0.1 % of a core): over ${BASE} s with no client connection, then over ${IDLE} s with all of them idle, from ${SETTLE} s after the"
  echo "  last was answered. Then one more GET on every connection (\"probe\") to check each still works."
  echo "- **WebSockets.** The same with $N_WS WebSocket upgrades of \`/ws\`, through each proxy, to a Bun.serve WebSocket echo origin (origin"
  echo "  pings off, so an idle WebSocket is silent both ways); nginx: \`proxy_http_version 1.1\`, \`Upgrade \$http_upgrade\`, \`Connection"
  echo "  upgrade\`, \`proxy_read_timeout 300s\`; gatehouse: a \`[[paths]]\` entry for \`/ws\` (WebSockets pass through a proxied route)."
  echo "  The probe sends one masked text message on every WebSocket and waits for the same text back."
  echo "- **Bun's floor.** The idle-connection measurement once more per round against bench/scale-floor.ts: a bare \`Bun.listen\` server that"
  echo "  answers each request with the same 1 KB and keeps nothing per connection (no parser, limits or upstream). What its connections cost,"
  echo "  any server on this Bun pays; gatehouse's own share is the difference."
  echo "- Each of these measurements starts its proxy afresh; rounds interleave the servers (nginx first in odd rounds, gatehouse first in"
  echo "  even ones). Figures are medians over $ROUNDS rounds; per-connection figures are the median of each round's own quotient."
  echo "- **1,000 sites.** Four proxies up at once, the same origin on $N_POOLS ports: nginx with 1 \`server\` block and 1 \`upstream\` block"
  echo "  (\`keepalive 64\`) against $N_SITES \`server\` blocks (\`server_name hN.test\`) over $N_POOLS \`upstream\` blocks (each \`keepalive 64\`);"
  echo "  gatehouse with 1 route file against $N_SITES route files (\`hosts = [\"hN.test\"]\`) over $N_POOLS upstream URLs (site i → origin"
  echo "  port i mod $N_POOLS). Checked first: \`h0\`, \`h1\`, \`h537\`, \`h999\` each reach the origin port of their pool (the origin's"
  echo "  \`X-Port\`). \`wrk -t2 -c$CONNS\` keep-alive, \`/nostore/1k\`, a Lua script that gives each request the Host of a site picked at"
  echo "  random, or always \`h0.test\` (the same script, so the client's cost is the same). Three loads per proxy: 1 site; $N_SITES sites with"
  echo "  every request for \`h0.test\` (the lookup among $N_SITES, one pool busy); $N_SITES sites with the Host at random (the lookup and all"
  echo "  $N_POOLS pools busy). A ${WARM} s warm-up each, then $ROUNDS rounds of ${SECS} s, the order rotating. CPU µs per request of the whole server"
  echo "  (nginx master and worker); on these $(nproc) shared cores it is steadier than req/s."
  echo
  echo "## Idle keep-alive connections ($N_IDLE)"
  echo
  echo "| server | RSS before MiB | RSS all open MiB | after ${SETTLE} + ${IDLE} s idle MiB | after close MiB | KB/conn open | KB/conn idle | KB/conn after close | CPU ms/s none open | CPU ms/s idle | upstream conns |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  row http
  echo
  echo "gatehouse ÷ nginx, memory per idle connection: **$HTTP_RATIO×** after the idle time (target ≤ 2×: $(yesno "$(awk -v r="$HTTP_RATIO" 'BEGIN {print (r <= 2)}')")),"
  echo "Bun's floor is $http_bun_kb KB per connection ($FLOOR_RATIO× nginx): gatehouse's own share is $OWN_KB KB."
  echo "$HTTP_RATIO_OPEN× right after opening; counting nginx's preallocated slot in its figure ($http_ngx_kb + $SLOT_B bytes = $HTTP_NGX_SLOT_KB KB), $HTTP_RATIO_SLOT×."
  echo "Connections that failed to open: nginx $http_ngx_fail, gatehouse $http_gh_fail; closed by the server while idle: nginx $http_ngx_cbs, gatehouse $http_gh_cbs;"
  echo "probe after the idle time, answered 200 over all rounds: nginx $http_ngx_pok (failed $http_ngx_pfail), gatehouse $http_gh_pok (failed $http_gh_pfail)."
  echo "nginx's \"before\" already holds its $((20000)) connection slots, allocated at start: its worker has $(mib "$NGX_SLOTS_KIB") MiB idle with"
  echo "\`worker_connections 20000\` against $(mib "$NGX_SMALL_KIB") MiB with 512, about $SLOT_B bytes per slot — memory nginx pays per *possible*"
  echo "connection, not in the per-connection figure above."
  echo
  echo "## WebSockets ($N_WS open)"
  echo
  echo "| server | RSS before MiB | RSS all open MiB | after ${SETTLE} + ${IDLE} s idle MiB | after close MiB | KB/conn open | KB/conn idle | KB/conn after close | CPU ms/s none open | CPU ms/s idle | upstream conns |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  row ws
  echo
  echo "gatehouse ÷ nginx, memory per open WebSocket: **$WS_RATIO×** (each is two sockets in the proxy: the client's and the origin's)."
  echo "Upgrades that failed: nginx $ws_ngx_fail, gatehouse $ws_gh_fail; closed by the server while idle: nginx $ws_ngx_cbs, gatehouse $ws_gh_cbs;"
  echo "message round trips after the idle time, over all rounds: nginx $ws_ngx_pok ok (failed $ws_ngx_pfail), gatehouse $ws_gh_pok ok (failed $ws_gh_pfail)."
  echo
  echo "## Proxied 1 KB with 1 site against $N_SITES sites and $N_POOLS upstream pools"
  echo
  echo "| proxy, sites loaded · Hosts asked | req/s | ÷ 1 site | p50 / p99 ms | CPU µs/req | ÷ 1 site | new upstream conns/req | upstream conns open |"
  echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
  echo "| nginx, 1 · 1 | $rps_ngx1 | 1.00 | $lat_ngx1 | $cpu_ngx1 | 1.00 | $new_ngx1 | $up_ngx1 |"
  echo "| nginx, $N_SITES · only h0.test | $rps_ngxk1 | $K1_NGX | $lat_ngxk1 | $cpu_ngxk1 | $K1C_NGX | $new_ngxk1 | $up_ngxk1 |"
  echo "| nginx, $N_SITES · all, at random ($N_POOLS pools) | $rps_ngxk | **$K_NGX** | $lat_ngxk | $cpu_ngxk | **$KC_NGX** | $new_ngxk | $up_ngxk |"
  echo "| gatehouse, 1 · 1 | $rps_gh1 | 1.00 | $lat_gh1 | $cpu_gh1 | 1.00 | $new_gh1 | $up_gh1 |"
  echo "| gatehouse, $N_SITES · only h0.test | $rps_ghk1 | $K1_GH | $lat_ghk1 | $cpu_ghk1 | $K1C_GH | $new_ghk1 | $up_ghk1 |"
  echo "| gatehouse, $N_SITES · all, at random ($N_POOLS pools) | $rps_ghk | **$K_GH** | $lat_ghk | $cpu_ghk | **$KC_GH** | $new_ghk | $up_ghk |"
  echo
  echo "Paired (each round's own quotient, median and range over the rounds; the contestants of a round ran one after another):"
  echo "req/s with $N_SITES sites at random ÷ 1 site: nginx $PR_NGXK, gatehouse $PR_GHK; with $N_SITES sites, only \`h0.test\` ÷ 1 site: nginx"
  echo "$PR_NGXK1, gatehouse $PR_GHK1. CPU µs/req, the same quotients: nginx $PC_NGXK and $PC_NGXK1, gatehouse $PC_GHK and $PC_GHK1."
  echo "gatehouse ÷ nginx req/s: $G1× with 1 site, $GK× with $N_SITES sites at random. Over all rounds: $THR_BAD."
  echo "New upstream connections per request: the kernel's TcpPassiveOpens over the run ÷ requests (the origin's accepts; 0.00 = every"
  echo "request on a reused connection). Upstream connections open: the proxy's connections to the origin right after the run."
  echo "RSS at the end: nginx worker $(mib "$NGX1_RSS") MiB with 1 site, $(mib "$NGXK_RSS") MiB with $N_SITES; gatehouse $(mib "$GH1_RSS") MiB with 1 site,"
  echo "$(mib "$GHK_RSS") MiB with $N_SITES. gatehouse with $N_SITES route files started (spawn to the first proxied 200, polled with curl every"
  echo "0.1 s) in $GHK_START_MS ms."
  echo
  echo "Logs over the whole run: gatehouse $GH_LOG_ERRORS error lines, $GH_LOG_WARNS warnings; nginx $NGX_LOG_ERRORS lines at error or above."
  echo
  near1() { awk -v r="${1%% *}" 'BEGIN {print (r >= 0.9 && r <= 1.1) ? "about 1" : (r < 0.9 ? "below 1" : "above 1")}'; }
  echo "## Reading"
  echo
  echo "- **Idle connections.** gatehouse keeps $http_gh_kb KB per idle keep-alive connection once it has been idle a while ($http_gh_kbopen KB right"
  echo "  after the burst that opened them, before its garbage is collected), nginx's worker $http_ngx_kb KB ($HTTP_NGX_SLOT_KB KB with the slot it"
  echo "  preallocates for every possible connection): $HTTP_RATIO× ($HTTP_RATIO_SLOT× with the slot), against a target of ≤ 2×. Of gatehouse's"
  echo "  figure, $http_bun_kb KB is Bun's own ($FLOOR_RATIO× nginx: a bare \`Bun.listen\` server that answered one request per connection and keeps"
  echo "  nothing), $OWN_KB KB gatehouse's: its connection object and write queue, the client's address, its place in the listener's set and the"
  echo "  idle sweep (src/front/h1-conn.ts; what a request needs beyond that is made per request and dropped after it). gatehouse's RSS also"
  echo "  moves by several MiB with its garbage collector's timing (compare \"all open\" with \"after idle\", and the rounds below). While"
  echo "  the connections sat idle nginx used $http_ngx_idle ms/s of CPU (its keep-alive timers"
  echo "  wake nothing until they expire), gatehouse $http_gh_idle ms/s against $http_gh_base ms/s with none open — the difference is what"
  echo "  $N_IDLE idle connections cost it per second (it keeps them in one shared sweep every 250 ms, src/lib/idle-watch.ts, not a timer each)."
  echo "  Nothing was closed or refused: every connection answered its probe after the idle time."
  echo "- **WebSockets.** gatehouse $ws_gh_kb KB per open WebSocket, nginx $ws_ngx_kb KB ($WS_RATIO×), each WebSocket being two sockets in the"
  echo "  proxy (client and origin). Idle CPU with $N_WS open: nginx $ws_ngx_idle ms/s,"
  echo "  gatehouse $ws_gh_idle ms/s (with none open $ws_gh_base ms/s). Every message round trip after the idle time came back, on both."
  echo "- **1,000 sites.** The lookup alone (1,000 sites loaded, every request for one of them) against 1 site: req/s nginx ${PR_NGXK1%% *},"
  echo "  gatehouse ${PR_GHK1%% *} ($(near1 "$PR_GHK1")); CPU per request nginx ${PC_NGXK1%% *}, gatehouse ${PC_GHK1%% *}. With the requests spread over all"
  echo "  1,000 sites and $N_POOLS pools: req/s nginx ${PR_NGXK%% *} ($(near1 "$PR_NGXK")), gatehouse ${PR_GHK%% *} ($(near1 "$PR_GHK")); CPU per request nginx"
  echo "  ${PC_NGXK%% *}, gatehouse ${PC_GHK%% *}. Spreading the requests changes the upstream side: gatehouse keeps one connection pool per"
  echo "  upstream address, shared by every route that names it (src/upstream/h1-pools.ts), as nginx's $N_POOLS \`upstream\` blocks are shared by"
  echo "  $((N_SITES / N_POOLS)) sites each: after the run it held $up_ghk connections to the origin (nginx $up_ngxk), and opened $new_ghk new upstream"
  echo "  connections per request (nginx $new_ngxk). The 2 cores are shared"
  echo "  with wrk, the origin and other jobs, so single runs swing by up to 2× here; the paired quotients are the figures to read."
  echo
  echo "## Raw records"
  echo
  echo "Parts 1 and 2, per round: RSS KiB before, all open, after idle, after close; CPU ms/s none open, idle; opened ok, failed;"
  echo "closed by the server; probe ok, failed; upstream connections after the idle time. Part 3: req/s, p50, p99, CPU µs/req,"
  echo "new connections/req, non-2xx, socket errors, MiB/s, max ms, upstream connections open after the run (thr-ngx1: 1 site;
thr-ngxk1 / thr-ghk1: 1,000 sites, Host h0.test only; thr-ngxk / thr-ghk: 1,000 sites, Host at random)."
  echo
  echo '```'
  for f in http-ngx http-gh http-bun ws-ngx ws-gh; do echo "$f"; cat "$R/$f"; done
  for s in $THR; do echo "thr-$s"; cat "$R/thr-$s"; done
  echo '```'
} > "$WORK/SCALE.md"
cp "$WORK/SCALE.md" bench/SCALE.md

# The rows in bench/RESULTS.md's first table ("| scale: …"), replaced where they are, else added after the table's last row.
{
  echo "| scale: proxied 1 KB, $N_SITES sites over $N_POOLS upstream pools (Host at random per request, HTTP, -c$CONNS; req/s $N_SITES ÷ 1 site, paired: nginx ${PR_NGXK%% *}, gatehouse ${PR_GHK%% *}; CPU/req: nginx ${PC_NGXK%% *}, gatehouse ${PC_GHK%% *}; with 1 site $G1×; its own run: \`bench/scale.sh $ROUNDS $SECS\`, [SCALE.md](SCALE.md)) | $rps_ngxk | $rps_ghk | **$GK** | $lat_ngxk | $lat_ghk | — |"
  echo "| scale: memory per idle keep-alive connection, KB ($N_IDLE open, RSS after $((SETTLE + IDLE)) s idle; with nginx's preallocated slot: $HTTP_RATIO_SLOT×; CPU idle nginx $http_ngx_idle ms/s, gatehouse $http_gh_idle ms/s; [SCALE.md](SCALE.md)) | $http_ngx_kb KB | $http_gh_kb KB | **$HTTP_RATIO** | — | — | ≤ 2×: $(yesno "$(awk -v r="$HTTP_RATIO" 'BEGIN {print (r <= 2)}')") |"
  echo "| scale: memory per open WebSocket, KB ($N_WS open through each to an echo origin; CPU idle nginx $ws_ngx_idle ms/s, gatehouse $ws_gh_idle ms/s; round trips ok: nginx $ws_ngx_pok, gatehouse $ws_gh_pok; [SCALE.md](SCALE.md)) | $ws_ngx_kb KB | $ws_gh_kb KB | **$WS_RATIO** | — | — | — |"
} > "$WORK/rows"
if [ -f bench/RESULTS.md ]; then
  awk -v rows="$WORK/rows" '
    function put() { while ((getline l < rows) > 0) print l; done = 1 }
    /^\| scale: / { if (!done) put(); next }
    /^\| scenario \|/ { table = 1 }
    table && !/^\|/ { if (!done) put(); table = 0 }
    { print }
    END { if (!done) put() }' bench/RESULTS.md > "$WORK/RESULTS.md" && cp "$WORK/RESULTS.md" bench/RESULTS.md
fi
cat bench/SCALE.md
echo "bench/scale.sh: done in $ELAPSED s" >&2
