#!/usr/bin/env bash
# TLS on loopback: gatehouse against nginx terminating TLS for the same nginx origin (1 KB, no-store), same run,
# interleaved A B A B. Three scenarios: HTTPS keep-alive; a new TLS connection per request (wrk with
# "Connection: close", which resumes the TLS session); full handshakes (openssl s_time -new, never resumes).
# Writes bench/RESULTS-tls.md. Needs Debian's nginx, wrk and openssl.
# Usage: bench/tls.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-3}
SECS=${2:-6}
CONNS=64
PAR=4   # parallel `openssl s_time` clients in the full-handshake scenario
WORK=$(mktemp -d /tmp/gatehouse-bench-tls.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as www-data
ORIGIN_PORT=18191 NGINX_PORT=18192 GH_PORT=18193 GH_ADMIN=18194 GH_TLS=18195 PROBE_PORT=18196
HOST=bench.test
T0=$(date +%s)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/www" "$WORK/routes" "$WORK/nginx-origin" "$WORK/nginx-proxy"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"
# One ECDSA P-256 certificate for both servers. The IP name is there because the gatehouse route lists 127.0.0.1
# among its hosts and `check` refuses a manual certificate that does not cover every host of the site.
timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"

nginx_conf "$WORK/nginx-origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; location / { add_header Cache-Control no-store; } }"
# The probe server (same worker, own port, access log on) only answers the one-second resumption probe below.
nginx_conf "$WORK/nginx-proxy" "upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
  log_format probe '\$connection \$ssl_session_reused \$status';
  server { listen 127.0.0.1:$NGINX_PORT ssl; server_name $HOST;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; } }
  server { listen 127.0.0.1:$PROBE_PORT ssl; access_log $WORK/probe.log probe; location / { return 200 ok; } }"
gh_config "https = \"127.0.0.1:$GH_TLS\"" ""
cat > "$WORK/routes/bench.toml" <<TOML
hosts = ["$HOST", "127.0.0.1"]
tls = "manual"
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
https_redirect = false
upstreams = ["http://127.0.0.1:$ORIGIN_PORT"]
TOML

timeout 30 node_modules/.bin/bun src/main.ts check -c "$WORK/config.toml" >&2
nginx -c "$WORK/nginx-origin/nginx.conf" & pids+=($!)
nginx -c "$WORK/nginx-proxy/nginx.conf" & NGX_MASTER=$!; pids+=($NGX_MASTER)
node_modules/.bin/bun src/main.ts run -c "$WORK/config.toml" > "$WORK/gatehouse.log" 2>&1 & GH_PID=$!; pids+=($GH_PID)
for i in $(seq 50); do curl -sf --max-time 1 "http://127.0.0.1:$GH_ADMIN/readyz" >/dev/null && break; sleep 0.1; done
curl -sf --max-time 1 "http://127.0.0.1:$GH_ADMIN/readyz" >/dev/null || { echo "gatehouse is not ready" >&2; cat "$WORK/gatehouse.log" >&2; exit 1; }
for port in $NGINX_PORT $GH_TLS; do
  for i in $(seq 50); do curl -sfk --max-time 1 -H "Host: $HOST" "https://127.0.0.1:$port/1k" >/dev/null && break; sleep 0.1; done
  curl -sfk --max-time 1 -H "Host: $HOST" "https://127.0.0.1:$port/1k" >/dev/null || { echo "nothing answers on port $port" >&2; cat "$WORK"/*/error.log "$WORK/gatehouse.log" >&2; exit 1; }
done
NGX_WORKER=$(pgrep -P "$NGX_MASTER" | head -1)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime of one process
passive_opens() { awk '/^Tcp:/ {if (!h) {for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1} else print $c}' /proc/net/snmp; }
TICK=$(getconf CLK_TCK)
# Each run prints one line: "rps p50ms p99ms server_cpu_us_per_req new_conns_per_req non2xx socket_errors".
run_wrk() { # $1 port, $2 server pid, then extra wrk arguments
  local port=$1 pid=$2; shift 2
  local c0 o0 out; c0=$(cpu_ticks "$pid"); o0=$(passive_opens)
  out=$(timeout $((SECS + 20)) wrk -t2 -c$CONNS -d"${SECS}s" --latency -H "Host: $HOST" "$@" "https://127.0.0.1:$port/1k")
  awk -v cpu=$(( $(cpu_ticks "$pid") - c0 )) -v opens=$(( $(passive_opens) - o0 )) -v tick="$TICK" '
    /requests in/ {n=$1}
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx or 3xx responses/ {bad=$NF}
    /Socket errors/ {gsub(",", ""); errs=$4+$6+$8+$10}
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    END {printf "%.0f %.3f %.3f %.0f %.2f %d %d\n", rps, ms(p50), ms(p99), n ? cpu*1e6/tick/n : 0, n ? opens/n : 0, bad, errs}' <<< "$out"
}
run_stime() { # $1 port, $2 server pid: PAR sequential full-handshake clients in parallel, no HTTP request
  local port=$1 pid=$2 c0 t0 t1 i sp=(); c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  for i in $(seq $PAR); do timeout $((SECS + 20)) openssl s_time -connect "127.0.0.1:$port" -new -time "$SECS" > "$WORK/stime.$i" 2>&1 & sp+=($!); done
  wait "${sp[@]}" || true
  t1=$(date +%s.%N)
  cat "$WORK"/stime.* | awk -v cpu=$(( $(cpu_ticks "$pid") - c0 )) -v tick="$TICK" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v par=$PAR '
    /connections in .* real seconds/ {n+=$1}
    /ERROR|error|errno/ {err++}
    END {printf "%.0f %.3f - %.0f 1.00 0 %d\n", n/wall, n ? par*wall*1000/n : 0, n ? cpu*1e6/tick/n : 0, err}'
  rm -f "$WORK"/stime.*
}
reset_hwm() { echo 5 > "/proc/$GH_PID/clear_refs" 2>/dev/null || true; }   # resets VmHWM (Linux >= 4.0) so each scenario has its own peak
hwm_mib() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$GH_PID/status"; }

# Does wrk resume TLS sessions when it reconnects? Ask nginx ($ssl_session_reused) over one second.
timeout 10 wrk -t1 -c2 -d1s -H "Connection: close" "https://127.0.0.1:$PROBE_PORT/" >/dev/null
sleep 0.2
PROBE=$(awk '{n++; if (!($1 in c)) {c[$1]=1; k++} if ($2 == "r") r++} END {printf "%d requests on %d connections, %d of them resumed", n, k, r}' "$WORK/probe.log")
# Does each server offer resumption at all? One openssl s_client connection saves the session, a second offers it.
resumes() { # $1 port
  local req="GET /1k HTTP/1.1\r\nHost: $HOST\r\nConnection: close\r\n\r\n"
  printf "$req" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$1" -sess_out "$WORK/sess" >/dev/null 2>&1 || true
  printf "$req" | timeout 5 openssl s_client -connect "127.0.0.1:$1" -sess_in "$WORK/sess" 2>/dev/null | grep -q '^Reused' && echo yes || echo no
  rm -f "$WORK/sess"
}
N_RESUMES=$(resumes $NGINX_PORT); G_RESUMES=$(resumes $GH_TLS)
G_CERT=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$GH_TLS" -servername 127.0.0.1 2>/dev/null | awk '/^ *0 s:/ {sub(/^ *0 s:/, ""); print; exit}')

SCENARIOS=(keepalive reconnect full)
declare -A TITLE=([keepalive]="HTTPS keep-alive, proxied 1 KB" [reconnect]="new TLS connection per request (resumed), proxied 1 KB" [full]="full TLS handshakes/s (no resumption, no request)")
declare -A RSS
for s in "${SCENARIOS[@]}"; do
  case $s in
    keepalive) runner() { run_wrk "$@"; } ;;
    reconnect) runner() { run_wrk "$@" -H "Connection: close"; } ;;
    full) runner() { run_stime "$@"; } ;;
  esac
  reset_hwm
  SECS_SAVED=$SECS; SECS=2; runner $GH_TLS $GH_PID >/dev/null; runner $NGINX_PORT $NGX_WORKER >/dev/null; SECS=$SECS_SAVED   # warm-up
  : > "$WORK/nginx-$s.txt"; : > "$WORK/gh-$s.txt"
  for r in $(seq "$ROUNDS"); do
    runner $NGINX_PORT $NGX_WORKER >> "$WORK/nginx-$s.txt"
    runner $GH_TLS $GH_PID >> "$WORK/gh-$s.txt"
    echo "$s round $r: nginx $(tail -1 "$WORK/nginx-$s.txt") | gatehouse $(tail -1 "$WORK/gh-$s.txt")" >&2
  done
  RSS[$s]=$(hwm_mib)
done
ELAPSED=$(( $(date +%s) - T0 ))

col() { cut -d' ' -f"$2" "$1" | median; }
{
  echo "# TLS benchmark results"
  echo
  echo "gatehouse against nginx terminating TLS in front of the same nginx origin (1 worker, 1 KB file, \`Cache-Control: no-store\`),"
  echo "loopback, median of $ROUNDS interleaved rounds (nginx, gatehouse, nginx, ...) of ${SECS} s per scenario, after a 2 s warm-up of each."
  echo "nginx: 1 worker, \`ssl_protocols TLSv1.2 TLSv1.3\`, \`ssl_session_cache shared:SSL:10m\`, session tickets on, upstream keepalive 64,"
  echo "HTTP/1.1 to the origin, access log off. gatehouse: one process, access log ${GH_ACCESS_LOG:-false}, \`tls = \"manual\"\` site."
  echo "Machine: $(nproc) cores, $(uname -r); $(date -u +%Y-%m-%d); $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(openssl version | awk '{print $1, $2}'), Bun $(node_modules/.bin/bun --version). Whole run: ${ELAPSED} s."
  echo
  echo "| scenario | nginx req/s | gatehouse req/s | ratio | nginx p50 / p99 (ms) | gatehouse p50 / p99 (ms) | server CPU per request, nginx / gatehouse (µs) | gatehouse peak RSS |"
  echo "| --- | ---: | ---: | ---: | --- | --- | --- | ---: |"
  for s in "${SCENARIOS[@]}"; do
    n="$WORK/nginx-$s.txt" g="$WORK/gh-$s.txt"
    n_rps=$(col "$n" 1) g_rps=$(col "$g" 1)
    ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN {printf "%.2f", n ? g/n : 0}')
    if [ "$s" = full ]; then lat_n="mean $(col "$n" 2)" lat_g="mean $(col "$g" 2)"; else lat_n="$(col "$n" 2) / $(col "$n" 3)" lat_g="$(col "$g" 2) / $(col "$g" 3)"; fi
    echo "| ${TITLE[$s]} | $n_rps | $g_rps | $ratio | $lat_n | $lat_g | $(col "$n" 4) / $(col "$g" 4) | ${RSS[$s]} MiB |"
  done
  echo
  echo "Method. Keep-alive and new-connection rows: \`wrk -t2 -c$CONNS -d${SECS}s --latency -H \"Host: $HOST\" https://127.0.0.1:PORT/1k\`,"
  echo "the second with \`-H \"Connection: close\"\` as well, so every request opens a new TCP and TLS connection (checked each run: new"
  echo "connections per request, from the kernel's TcpPassiveOpens, in the rounds below). wrk keeps the TLS session across reconnects and"
  echo "offers it again, so these are **resumed** TLS 1.3 handshakes (PSK + X25519, no certificate signature): this run's probe against nginx"
  echo "(\`\$ssl_session_reused\`) saw $PROBE. Session resumption offered: nginx $N_RESUMES, gatehouse $G_RESUMES (openssl s_client -sess_out/-sess_in)."
  echo "wrk starts a request's clock after connect and handshake, so p50/p99 in that row leave the handshake out; its cost shows in req/s and CPU."
  echo "Full-handshake row: $PAR parallel \`openssl s_time -new -time ${SECS}\` clients (a new session every time, handshake then close, no HTTP request),"
  echo "connections per second of wall time; latency is the mean per connection ($PAR × wall / connections); s_time gives no percentiles."
  echo "wrk sends the URL's host, 127.0.0.1, as SNI (s_time sends none); gatehouse serves no certificate for an IP SNI name, so it answers with"
  echo "its fallback certificate ($G_CERT, ECDSA P-256, chain of leaf + internal CA) and routes on the Host header; nginx serves the bench.test"
  echo "certificate (ECDSA P-256, leaf only). Server CPU is utime + stime of the nginx worker or the gatehouse process over the run, per request"
  echo "(per handshake in the last row). On 2 cores the client (OpenSSL 3 in wrk and s_time) takes most of the CPU in the handshake rows, so"
  echo "their req/s are bounded by the client and the server CPU column is the more telling one there."
  echo "gatehouse (Bun) closes the connection after a \`Connection: close\` request without sending \`Connection: close\` in the response"
  echo "(RFC 9112 §9.6: SHOULD), so wrk tries the closed connection again and counts one socket read error per request in that row; nginx sends it."
  echo "Rerun: \`bench/tls.sh [ROUNDS] [SECONDS]\` (needs Debian's nginx, wrk and openssl)."
  echo
  echo "Rounds (req/s, p50 ms, p99 ms, server CPU µs per request, new connections per request, non-2xx responses, socket errors):"
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "${TITLE[$s]}:"
    echo
    paste -d'|' "$WORK/nginx-$s.txt" "$WORK/gh-$s.txt" | awk -F'|' '{print "- nginx " $1 " · gatehouse " $2}'
  done
} > bench/RESULTS-tls.md
cat bench/RESULTS-tls.md
