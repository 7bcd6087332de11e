#!/usr/bin/env bash
# A 1 GiB TCP stream through a TLS-terminating route (issue 19): gatehouse's [[tcp]] mode = "terminate" against nginx's `stream`
# module (`listen … ssl` + `proxy_pass`), same run, both with one worker and the same ECDSA P-256 certificate, in front of the same
# plain origin (bench/tcp-stream-client.ts origin). Both directions: up (client → origin, the clock stops at the origin's "OK"
# after the last byte) and down (origin → client, the clock stops at the last byte received). Interleaved rounds, nginx first in
# odd rounds and gatehouse first in even ones; medians of MB/s (10^6 bytes/s), the ratio gatehouse ÷ nginx, and the CPU seconds
# of the proxy (all its processes, /proc/PID/stat utime + stime), of the client and of the origin during each transfer.
# The proxy is pinned to the last core, the client and the origin to the others (as bench/h2.sh), so the proxy has one core.
# When `gatehouse check` refuses the [[tcp]] config, or nothing listens on its address, the gatehouse side is left out and the page
# says why. Transfers disturbed by other processes (more than QUIET CPU seconds of theirs) are repeated, at most TRIES times.
# Writes bench/TCP-STREAM.md, keeping its hand-written section "What limits each side". Needs Debian's nginx with
# libnginx-mod-stream (installed here when missing and run as root), openssl and taskset.
# Usage: bench/tcp-stream.sh [ROUNDS] [MIB]   (defaults 5 and 1024: about a minute on a quiet machine)
#        NGX_BUFFER=16k (nginx's default proxy_buffer_size; 256k here), QUIET=0.5, TRIES=4 in the environment
set -euo pipefail
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${1:-${ROUNDS:-5}}
MIB=${2:-${MIB:-1024}}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $MIB =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/tcp-stream.sh [ROUNDS] [MIB] (positive integers)" >&2; exit 2; }
BYTES=$((MIB * 1048576))
HOST=bench.test
ORIGIN_PORT=18501 NGX_PORT=18502 GH_TCP=18503 GH_PORT=18504 GH_ADMIN=18505
CORES=$(nproc)
SRV_CPU=$((CORES - 1)) REST_CPU=$([ "$CORES" -gt 1 ] && seq -s, 0 $((CORES - 2)) || echo 0)
BUN=node_modules/.bin/bun
CLIENT=bench/tcp-stream-client.ts
NGX_BUFFER=${NGX_BUFFER:-256k}   # nginx stream's proxy_buffer_size, the size of each read and write both ways: its default 16k costs it 20–30 % more CPU
QUIET=${QUIET:-0.5} TRIES=${TRIES:-4}   # see the rounds below: transfers disturbed by other processes are repeated
XFER_LIMIT=$(( 60 + MIB / 4 ))   # seconds one transfer may take (4 MB/s at the very least), then it counts as failed

[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx openssl taskset; do
  command -v "$tool" >/dev/null || { echo "bench/tcp-stream.sh: $tool is missing (Debian: apt-get install nginx openssl util-linux)" >&2; exit 1; }
done
stream_module() { local f; for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 1; }
if ! stream_module >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench/tcp-stream.sh: installing libnginx-mod-stream (nginx's stream module)" >&2
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends libnginx-mod-stream >&2 || true
  fi
  stream_module >/dev/null || { echo "bench/tcp-stream.sh: nginx's stream module is missing: apt-get install libnginx-mod-stream (as root)" >&2; exit 1; }
fi
STREAM_SO=$(stream_module)
for port in $ORIGIN_PORT $NGX_PORT $GH_TCP $GH_PORT $GH_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/tcp-stream.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done

WORK=$(mktemp -d /tmp/gatehouse-tcp-stream.XXXXXX)
chmod 755 "$WORK"   # nginx's worker runs as www-data
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench/tcp-stream.sh: $*" >&2; for f in "$WORK"/nginx/error.log "$WORK"/gh/gatehouse.log "$WORK"/origin.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }

echo "building the binary" >&2
"$BUN" build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$WORK/gatehouse" >/dev/null || die "cannot build the binary"
GH_BIN=$WORK/gatehouse

# One ECDSA P-256 certificate for both proxies.
mkdir -p "$WORK/nginx" "$WORK/gh/routes"
timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"

# nginx: one worker, TLS 1.2/1.3 with its defaults (the client's cipher order), proxy_pass to the origin with a $NGX_BUFFER buffer.
cat > "$WORK/nginx/nginx.conf" <<NGX
load_module $STREAM_SO;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 1024; }
stream {
  server {
    listen 127.0.0.1:$NGX_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_pass 127.0.0.1:$ORIGIN_PORT;
    proxy_buffer_size $NGX_BUFFER;
  }
}
NGX
nginx -t -c "$WORK/nginx/nginx.conf" 2>/dev/null || die "nginx -t refused the stream config: $(nginx -t -c "$WORK/nginx/nginx.conf" 2>&1 | tail -3)"

# gatehouse: one worker, a certificate-only site with the same certificate, one [[tcp]] route terminating TLS with it.
cat > "$WORK/gh/config.toml" <<TOML
routes_dir = "routes"
pid_file = "gatehouse.pid"
workers = 1
[listen]
http = "127.0.0.1:$GH_PORT"
admin = "127.0.0.1:$GH_ADMIN"
[log]
access = false
[[tcp]]
name = "stream"
listen = "127.0.0.1:$GH_TCP"
mode = "terminate"
site = "bench"
upstreams = ["tcp://127.0.0.1:$ORIGIN_PORT"]
TOML
printf 'hosts = ["%s"]\ntls = "manual"\ncert = "%s"\nkey = "%s"\n' "$HOST" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/gh/routes/bench.toml"
GH_SKIP=""
if ! GH_CHECK=$(timeout 60 "$GH_BIN" check -c "$WORK/gh/config.toml" 2>&1); then
  GH_SKIP=$(head -3 <<< "$GH_CHECK" | sed "s|$WORK/gh/||g")
  echo "bench/tcp-stream.sh: gatehouse check refuses the [[tcp]] config, so only nginx is measured: $GH_SKIP" >&2
fi

taskset -c "$REST_CPU" "$BUN" "$CLIENT" origin "$ORIGIN_PORT" > "$WORK/origin.log" 2>&1 & ORIGIN_PID=$!; pids+=($ORIGIN_PID)
taskset -c "$SRV_CPU" nginx -c "$WORK/nginx/nginx.conf" & NGX_MASTER=$!; pids+=($NGX_MASTER)
SERVERS=(nginx)
declare -A PID=([nginx]=$NGX_MASTER) PORT=([nginx]=$NGX_PORT)
if [ -z "$GH_SKIP" ]; then
  (cd "$WORK/gh" && exec taskset -c "$SRV_CPU" "$GH_BIN" run -c "$WORK/gh/config.toml" > "$WORK/gh/gatehouse.log" 2>&1) & GH_PID=$!; pids+=($GH_PID)
  SERVERS+=(gatehouse); PID[gatehouse]=$GH_PID PORT[gatehouse]=$GH_TCP
fi
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $ORIGIN_PORT "${PORT[@]}"; do
  for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
  listening "$port" && continue
  [ "$port" = "$GH_TCP" ] || die "nothing listens on 127.0.0.1:$port after 10 s"
  # A gatehouse that reads [[tcp]] but does not listen on it yet: measure nginx alone and say so.
  GH_SKIP="gatehouse ran (\`check\` accepted the config) but nothing listened on the [[tcp]] address 127.0.0.1:$GH_TCP after 10 s"
  echo "bench/tcp-stream.sh: $GH_SKIP; only nginx is measured" >&2
  SERVERS=(nginx)
done

# The machine's CPU from /proc/stat, all cores, in ticks: "busy steal" (busy: user, nice, system, irq, softirq; steal: taken by the hypervisor).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
# One transfer prints one record: "MB/s seconds proxy_cpu_s client_cpu_s origin_cpu_s tls cipher MB_per_proxy_cpu_s others_cpu_s steal_s"
# (others: the CPU that every other process on the machine used meanwhile, i.e. busy time not spent by the proxy, client or origin).
transfer() { # $1 server, $2 up | down, $3 bytes
  local pid=${PID[$1]} p0 o0 m0 m1 out
  p0=$(cpu_ticks "$pid"); o0=$(cpu_ticks "$ORIGIN_PID"); m0=$(machine_ticks)
  out=$(timeout "$XFER_LIMIT" taskset -c "$REST_CPU" "$BUN" "$CLIENT" "$2" "${PORT[$1]}" "$HOST" "$3" 2>&1) || die "$1 $2: $out"
  m1=$(machine_ticks)
  awk -v p=$(( $(cpu_ticks "$pid") - p0 )) -v o=$(( $(cpu_ticks "$ORIGIN_PID") - o0 )) -v tick="$TICK" \
    -v busy=$(( ${m1% *} - ${m0% *} )) -v steal=$(( ${m1#* } - ${m0#* } )) '
    function f(k,  m) { m = $0; sub(".*\"" k "\":\"?", "", m); sub("[\",}].*", "", m); return m }
    {others = busy / tick - p / tick - o / tick - f("client_cpu_s"); if (others < 0) others = 0
     printf "%s %s %.2f %s %.2f %s %s %.0f %.2f %.2f\n", f("mbps"), f("seconds"), p / tick, f("client_cpu_s"), o / tick, f("tls"), f("cipher"),
       p ? f("bytes") / 1e6 / (p / tick) : 0, others, steal / tick}' <<< "$out"
}

# Warm-up: 64 MiB each way through each proxy (the first connection of a fresh Bun process is slower).
for s in "${SERVERS[@]}"; do for d in up down; do transfer "$s" "$d" $((64 * 1048576)) > /dev/null; done; done
for r in $(seq "$ROUNDS"); do
  order=("${SERVERS[@]}"); [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${SERVERS[@]}" | tac))
  for d in up down; do
    for s in "${order[@]}"; do
      # A transfer during which other processes took more than QUIET CPU seconds is done again (at most TRIES in all; the last counts).
      for try in $(seq "$TRIES"); do
        rec=$(transfer "$s" "$d" "$BYTES")
        echo "round $r $d $s try $try: $rec" >&2
        awk -v q="$QUIET" '{exit !($9 <= q)}' <<< "$rec" && break
        [ "$try" -lt "$TRIES" ] && echo "$s $d $rec" >> "$WORK/noisy.txt"
      done
      echo "$rec" >> "$WORK/$s-$d.txt"
    done
  done
done
ELAPSED=$(( $(date +%s) - T0 ))
# The hand-written reading of a run (a section "## What limits each side" and what follows it) stays across this rewrite.
KEPT=$(sed -n '/^## What limits each side/,$p' bench/TCP-STREAM.md 2>/dev/null || true)

med() { [ -s "$WORK/$1-$2.txt" ] && col "$WORK/$1-$2.txt" "$3" || echo "—"; }   # $1 server, $2 direction, $3 column
ratio() { awk -v g="$1" -v n="$2" 'BEGIN {if (g == "—" || !n) print "—"; else printf "%.2f", g / n}'; }
{
  echo "# A 1 GiB TCP stream through a TLS-terminating proxy: gatehouse [[tcp]] against nginx stream"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $CORES cores (shared, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), load average $LOAD0 at the start;"
  echo "$(nginx -v 2>&1 | sed 's/.*: //') with Debian's libnginx-mod-stream, $(openssl version | awk '{print $1, $2}'), Bun $("$BUN" --version) (client and origin);"
  echo "gatehouse as a binary built by this run (\`bun build --compile --bytecode\`). \`bench/tcp-stream.sh $ROUNDS $MIB\`, $ELAPSED s in all."
  echo
  echo "One TLS connection carries $MIB MiB ($BYTES bytes) through the proxy to a plain TCP origin on loopback: **up** (client → origin;"
  echo "the clock runs from the end of the handshake to the origin's \"OK\" after the last byte) and **down** (origin → client; to the"
  echo "last byte received). The client (\`bench/tcp-stream-client.ts\`, Bun's native TLS client, no certificate check) writes 1 MiB chunks"
  echo "with backpressure; the origin (the same file, \`origin\` mode) discards or sends 1 MiB chunks. Both proxies run one worker pinned"
  echo "to core $SRV_CPU (\`taskset\`), the client and the origin on core(s) $REST_CPU. After a 64 MiB warm-up each way through each proxy,"
  echo "$ROUNDS interleaved round(s) (nginx first in odd rounds, gatehouse first in even ones). Figures are medians over the rounds;"
  echo "MB/s is 10^6 bytes per second; CPU is utime + stime from /proc/PID/stat over the transfer (nginx: master and worker;"
  echo "gatehouse: every process of it). The last two columns show what else the machine did meanwhile: the CPU of every other process"
  echo "(/proc/stat busy time minus the three above) and the time the hypervisor gave to other guests (steal). MB/s swings with them;"
  echo "MB per proxy CPU second does much less. A transfer during which other processes used more than $QUIET CPU s was done again, at most"
  echo "$TRIES times in all (the last try counts): $( [ -s "$WORK/noisy.txt" ] && wc -l < "$WORK/noisy.txt" || echo 0) transfer(s) repeated in this run."
  echo
  echo "- nginx: \`worker_processes 1\`, \`stream { server { listen … ssl; ssl_protocols TLSv1.2 TLSv1.3; proxy_pass 127.0.0.1:PORT; } }\`"
  echo "  \`proxy_buffer_size $NGX_BUFFER;\` (with its default 16k nginx used 20–30 % more CPU per byte in trial runs), no PROXY protocol."
  echo "- gatehouse: \`workers = 1\`, a certificate-only site (\`tls = \"manual\"\`, the same certificate) and"
  echo "  \`[[tcp]] mode = \"terminate\"\`, \`site\`, \`upstreams = [\"tcp://127.0.0.1:PORT\"]\` (no \`send_proxy_protocol\`)."
  if [ -n "$GH_SKIP" ]; then
    echo
    echo "**gatehouse not measured in this run** (its [[tcp]] runtime was not there yet):"
    echo
    echo '```'
    echo "$GH_SKIP"
    echo '```'
  fi
  echo
  echo "| direction | nginx MB/s | gatehouse MB/s | ratio | proxy CPU s nginx / gatehouse | MB per proxy CPU s nginx / gatehouse | ratio | client CPU s (nginx / gatehouse runs) | origin CPU s | other processes' CPU s | steal s |"
  echo "| --- | ---: | ---: | ---: | --- | --- | ---: | --- | --- | --- | --- |"
  for d in up down; do
    n=$(med nginx "$d" 1) g=$(med gatehouse "$d" 1)
    en=$(med nginx "$d" 8) eg=$(med gatehouse "$d" 8)
    echo "| $d | $n | $g | **$(ratio "$g" "$n")** | $(med nginx "$d" 3) / $(med gatehouse "$d" 3) | $en / $eg | **$(ratio "$eg" "$en")** | $(med nginx "$d" 4) / $(med gatehouse "$d" 4) | $(med nginx "$d" 5) / $(med gatehouse "$d" 5) | $(med nginx "$d" 9) / $(med gatehouse "$d" 9) | $(med nginx "$d" 10) / $(med gatehouse "$d" 10) |"
  done
  echo
  for s in "${SERVERS[@]}"; do
    echo "Negotiated with $s: $(cat "$WORK/$s-up.txt" "$WORK/$s-down.txt" | awk '{print $6 " " $7}' | sort -u | paste -sd, -)."
  done
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "## Rounds"
  echo
  echo "Per transfer: MB/s, seconds, proxy CPU s, client CPU s, origin CPU s, TLS version and cipher, MB per proxy CPU second, other processes' CPU s, steal s."
  for d in up down; do
    for s in "${SERVERS[@]}"; do
      echo
      echo "$s, $d:"
      echo
      sed 's/^/- /' "$WORK/$s-$d.txt"
    done
  done
  [ -n "$KEPT" ] && { echo; echo "$KEPT"; }
} > bench/TCP-STREAM.md
cat bench/TCP-STREAM.md
echo "bench/tcp-stream.sh: done in ${ELAPSED} s" >&2
