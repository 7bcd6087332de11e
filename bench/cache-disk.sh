#!/usr/bin/env bash
# The cache's disk tier (issue 17) against nginx proxy_cache, same run: cache hits of 1 KB, 64 KB, 1 MB (1,000,000 bytes, read whole
# from a file) and 2 MiB (streamed from its file) from
#   - nginx proxy_cache (its cache is files on disk: every hit opens and reads one, from the page cache once warm),
#   - gatehouse with its disk tier and a 256 MiB memory tier (hits from memory: the memory tier's figure with a disk tier behind it),
#   - gatehouse with its disk tier and a 1 KiB memory tier (no object fits: every hit is a disk-tier read, `detail=disk`),
# each server one process (nginx worker_processes 1, gatehouse workers = 1), access logs off, keep-alive, all pinned to the same
# core, wrk on the other; interleaved rounds with the order rotating. Then restarts with a warm disk tier: from spawn to the first
# hit, and how many requests reached the origin, for gatehouse and for nginx (whose cache files outlive it too).
# Writes bench/CACHE-DISK.md and the disk-tier rows of bench/RESULTS.md's table.
# Usage: bench/cache-disk.sh [ROUNDS] [SECONDS]   (defaults 5 and 5). Needs nginx, wrk, curl, taskset; builds the binary from the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-5} SECS=${2:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/cache-disk.sh [ROUNDS] [SECONDS] (positive integers)" >&2; exit 2; }
WARM=$(( SECS < 2 ? SECS : 2 ))   # warm-up of each contestant before each scenario, seconds
RESTARTS=5
[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk curl taskset cmp; do command -v "$tool" > /dev/null || { echo "bench/cache-disk.sh: $tool is missing" >&2; exit 1; }; done
ORIGIN_PORT=18281 NGX_PORT=18282 GHM_PORT=18283 GHM_ADMIN=18284 GHD_PORT=18285 GHD_ADMIN=18286
for port in $ORIGIN_PORT $NGX_PORT $GHM_PORT $GHM_ADMIN $GHD_PORT $GHD_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/cache-disk.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done
CORES=$(nproc)
# The proxies on the last core (only one is under load at a time); wrk and the origin on the others (all of them on a 1-core machine).
SRV_CPU=$((CORES - 1)) REST_CPU=$([ "$CORES" -gt 1 ] && echo "0-$((CORES - 2))" || echo 0)
taskset -cp "$REST_CPU" $$ > /dev/null   # this script and what it starts (wrk, the origin, the polls), unless pinned elsewhere
T0=$(date +%s)
WORK=$(mktemp -d /tmp/gatehouse-cache-disk.XXXXXX); chmod 755 "$WORK"   # nginx workers run as www-data
ORIGIN="" NGINX="" GHM="" GHD=""
stop() { # pids: TERM, up to 3 s, then KILL
  local p
  for p in "$@"; do kill "$p" 2> /dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 60); do kill -0 "$p" 2> /dev/null || break; sleep 0.05; done
    kill -9 "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
}
cleanup() { stop $NGINX $GHM $GHD $ORIGIN; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
  echo "bench/cache-disk.sh: $*" >&2
  for f in "$WORK/origin/error.log" "$WORK/ngx/error.log" "$WORK/gh-mem/gatehouse.log" "$WORK/gh-disk/gatehouse.log"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}

# The objects: random bytes (nothing compresses them), 1 KiB, 64 KiB, 1,000,000 bytes (with its head, under the disk tier's 1 MiB
# read-whole bound: read whole and checked at once) and 2 MiB (over it: streamed from its file, its CRC checked as it goes).
PATHS="1k 64k 1m 2m"
declare -A BYTES=([1k]=1024 [64k]=65536 [1m]=1000000 [2m]=2097152) CONNS=([1k]=64 [64k]=64 [1m]=8 [2m]=8)
declare -A LABEL=([1k]="1 KB" [64k]="64 KB" [1m]="1 MB" [2m]="2 MiB")
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/ngx" "$WORK/res"
for p in $PATHS; do head -c "${BYTES[$p]}" /dev/urandom > "$WORK/www/$p"; done

echo "building the binary" >&2
BIN=$WORK/gatehouse
timeout 600 node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig \
  --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile "$BIN" > "$WORK/build.log" 2>&1 || die "cannot build: $(tail -5 "$WORK/build.log")"

# The origin: nginx, 1 worker, its access log on (one line per request: how often it was asked).
nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; access_log $WORK/origin/access.log;
    location / { add_header Cache-Control \"public, max-age=3600\"; } }"
origin_asked() { if [ -f "$WORK/origin/access.log" ]; then wc -l < "$WORK/origin/access.log"; else echo 0; fi; }
# nginx proxy_cache: the cache on the same ext4 file system as gatehouse's dir, temp files in it (use_temp_path=off).
nginx_conf "$WORK/ngx" "proxy_cache_path $WORK/ngx-cache levels=1:2 keys_zone=disk:10m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 16; }
  server { listen 127.0.0.1:$NGX_PORT;
    proxy_http_version 1.1; proxy_set_header Connection \"\";
    location / { proxy_pass http://origin; proxy_cache disk; proxy_cache_lock on; add_header X-Cache \$upstream_cache_status; } }"
# gatehouse: the same [cache] but for the memory tier's size, each with its own dir.
gh_make() { # $1 name, $2 port, $3 admin port, $4 memory tier max_size
  local d=$WORK/$1
  mkdir -p "$d/routes"
  WORK=$d GH_PORT=$2 GH_ADMIN=$3 gh_config "" "[cache]
dir = \"$d/cache\"
disk_size = \"1GiB\"
max_size = \"$4\"
max_object_size = \"4MiB\""
  printf 'hosts = ["cache.test", "127.0.0.1"]\nupstreams = ["http://127.0.0.1:%s"]\n[cache]\n' "$ORIGIN_PORT" > "$d/routes/site.toml"
  timeout 60 "$BIN" check -c "$d/config.toml" > "$d/check.log" 2>&1 || die "gatehouse check refused $d/config.toml: $(tail -5 "$d/check.log")"
}
gh_make gh-mem $GHM_PORT $GHM_ADMIN 256MiB
gh_make gh-disk $GHD_PORT $GHD_ADMIN 1KiB
# For the restarts only: gh-mem's config without a disk tier (its port; never run beside it), to tell the process's own start from the tier's.
mkdir -p "$WORK/gh-nodisk/routes"; cp "$WORK/gh-mem/routes/site.toml" "$WORK/gh-nodisk/routes/"
WORK=$WORK/gh-nodisk GH_PORT=$GHM_PORT GH_ADMIN=$GHM_ADMIN gh_config "" "[cache]
max_size = \"256MiB\"
max_object_size = \"4MiB\""
gh_start() { # $1 name: starts it pinned; its pid in LAST
  local d=$WORK/$1
  (cd "$d" && exec taskset -c "$SRV_CPU" "$BIN" run -c "$d/config.toml" >> "$d/gatehouse.log" 2>&1) &
  LAST=$!
}
ngx_start() { taskset -c "$SRV_CPU" nginx -c "$WORK/ngx/nginx.conf" >> "$WORK/ngx/stderr.log" 2>&1 & LAST=$!; }

nginx -c "$WORK/origin/nginx.conf" >> "$WORK/origin/stderr.log" 2>&1 & ORIGIN=$!
ngx_start; NGINX=$LAST
gh_start gh-mem; GHM=$LAST
gh_start gh-disk; GHD=$LAST

declare -A PORT=([nginx]=$NGX_PORT [gh-mem]=$GHM_PORT [gh-disk]=$GHD_PORT)
NAMES="nginx gh-mem gh-disk"
pid_of() { case $1 in nginx) echo "$NGINX" ;; gh-mem) echo "$GHM" ;; gh-disk) echo "$GHD" ;; esac; }
get() { curl -s --max-time 10 -o "$WORK/$1.$2.body" -D "$WORK/$1.$2.head" -w '%{http_code}' "http://127.0.0.1:${PORT[$1]}/$2"; }
listening() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }   # no request: the origin's count stays that of the fills
for _ in $(seq 100); do listening $ORIGIN_PORT && listening $NGX_PORT && listening $GHM_PORT && listening $GHD_PORT && break; sleep 0.1; done
for port in $ORIGIN_PORT $NGX_PORT $GHM_PORT $GHD_PORT; do listening $port || die "nothing listens on $port"; done
O_START=$(origin_asked)
# The fills (one miss per object and proxy), then every object checked: a 200, the origin's bytes, and the kind of hit each should be.
objects() { find "$1" -type f 2> /dev/null | wc -l; }   # files under a cache directory
for n in $NAMES; do for p in $PATHS; do [ "$(get "$n" "$p")" = 200 ] || die "$n: /$p does not answer 200"; done; done
for _ in $(seq 100); do [ "$(objects "$WORK/gh-mem/cache/v2/objects")" -ge 4 ] && [ "$(objects "$WORK/gh-disk/cache/v2/objects")" -ge 4 ] && break; sleep 0.05; done
FILLS=$(( $(origin_asked) - O_START ))
[ "$FILLS" = 12 ] || die "the fills asked the origin $FILLS times, not 12 (4 objects, 3 proxies)"
expect_hit() { # $1 name, $2 path: after the fills
  [ "$(get "$1" "$2")" = 200 ] || die "$1: /$2 does not answer 200"
  cmp -s "$WORK/$1.$2.body" "$WORK/www/$2" || die "$1: /$2 is not the origin's bytes"
  case $1 in
    nginx) grep -qi '^x-cache: hit' "$WORK/$1.$2.head" || die "nginx: /$2 is not a HIT: $(grep -i '^x-cache' "$WORK/$1.$2.head")" ;;
    gh-mem) grep -qi '^cache-status:.*hit' "$WORK/$1.$2.head" && ! grep -qi '^cache-status:.*detail=disk' "$WORK/$1.$2.head" ||
      die "gh-mem: /$2 is not a memory hit: $(grep -i '^cache-status' "$WORK/$1.$2.head")" ;;
    gh-disk) grep -qi '^cache-status:.*hit.*detail=disk' "$WORK/$1.$2.head" || die "gh-disk: /$2 is not a disk hit: $(grep -i '^cache-status' "$WORK/$1.$2.head")" ;;
  esac
}
for n in $NAMES; do for p in $PATHS; do expect_hit "$n" "$p"; done; done
STATUS_MEM=$(grep -i '^cache-status' "$WORK/gh-mem.1k.head" | tr -d '\r') STATUS_DISK=$(grep -i '^cache-status' "$WORK/gh-disk.2m.head" | tr -d '\r')
[ "$(( $(origin_asked) - O_START ))" = 12 ] || die "the checks reached the origin"

# Memory and open files of the gatehouse processes, after each of their runs: a leak or a growth shows here.
vm_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }   # $1 pid, $2 VmRSS | VmHWM
fds() { find "/proc/$1/fd" -mindepth 1 2> /dev/null | wc -l; }
IDLE_RSS_M=$(vm_kib "$GHM" VmRSS) IDLE_RSS_D=$(vm_kib "$GHD" VmRSS) IDLE_FD_M=$(fds "$GHM") IDLE_FD_D=$(fds "$GHD")
wrk_as() { # $1 seconds, $2 name, $3 path
  local pid
  pid=$(pid_of "$2")
  taskset -c "$REST_CPU" bash -c "$(declare -f run_wrk tree_pids cpu_ticks passive_opens); TICK=$TICK; run_wrk $pid $1 ${CONNS[$3]} http://127.0.0.1:${PORT[$2]}/$3"
}
ORDERS=("nginx gh-mem gh-disk" "gh-mem gh-disk nginx" "gh-disk nginx gh-mem")
: > "$WORK/mem"
for p in $PATHS; do
  echo "scenario /$p" >&2
  for n in $NAMES; do wrk_as "$WARM" "$n" "$p" > /dev/null; : > "$WORK/res/$p.$n"; done
  for r in $(seq "$ROUNDS"); do
    for n in ${ORDERS[$(((r - 1) % 3))]}; do
      wrk_as "$SECS" "$n" "$p" >> "$WORK/res/$p.$n"
      [ "$n" = nginx ] || echo "$p $r $n $(vm_kib "$(pid_of "$n")" VmRSS) $(fds "$(pid_of "$n")")" >> "$WORK/mem"
    done
  done
done
BENCH_ASKED=$(( $(origin_asked) - O_START - FILLS ))
for n in gh-mem gh-disk; do kill -0 "$(pid_of "$n")" 2> /dev/null || die "$n exited during the benchmark"; done
HWM_M=$(vm_kib "$GHM" VmHWM) HWM_D=$(vm_kib "$GHD" VmHWM) END_RSS_M=$(vm_kib "$GHM" VmRSS) END_RSS_D=$(vm_kib "$GHD" VmRSS)
END_FD_M=$(fds "$GHM") END_FD_D=$(fds "$GHD")
NGX_RSS=$(vm_kib "$(pgrep -P "$NGINX" -f 'worker process' | head -1)" VmHWM)
for n in $NAMES; do for p in $PATHS; do expect_hit "$n" "$p"; done; done   # still the same kind of hit after the load
DISK_BYTES_GH=$(du -sb "$WORK/gh-mem/cache/v2/objects" | cut -f1) DISK_BYTES_NGX=$(du -sb "$WORK/ngx-cache" | cut -f1)

# Restarts with a warm cache. gatehouse: the memory-tier instance stopped (SIGTERM: its index closed), then started again on the same
# dir, polled with bash's /dev/tcp (no process per attempt) from spawn to the first answer to /1k that is a hit; then the other
# objects once each. The origin's access log says whether any of it reached the origin. nginx: the same, its X-Cache HIT.
stop "$GHD"; GHD=""
stop "$GHM"; GHM=""
stop "$NGINX"; NGINX=""
ms_since() { local a=${1/./} b=${EPOCHREALTIME/./}; echo $(( (10#$b - 10#$a) / 1000 )); }   # $1 an $EPOCHREALTIME
head_of() { # $1 port, $2 path: status line and header fields of one GET over a new connection, or nothing; the body is not read
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2> /dev/null || return 1
  printf 'GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  while IFS= read -r -t 5 line <&3; do line=${line%$'\r'}; [ -z "$line" ] && break; echo "$line"; done
  exec 3<&- 3>&-
}
is_hit() { grep -qi '^cache-status:.*hit\|^x-cache: hit'; }
restarts() { # $1 gh | nginx | gh-nodisk (any 200 will do): appends "ms first_answer_was_hit origin_asked other_hits" per restart to $WORK/restart.$1
  local i t pid h ms first asked o0 hits p
  : > "$WORK/restart.$1"
  for i in $(seq "$RESTARTS"); do
    o0=$(origin_asked)
    t=$EPOCHREALTIME
    case $1 in gh) gh_start gh-mem; port=$GHM_PORT ;; gh-nodisk) gh_start gh-nodisk; port=$GHM_PORT ;; nginx) ngx_start; port=$NGX_PORT ;; esac
    pid=$LAST
    [ "$1" = nginx ] && NGINX=$pid || GHM=$pid
    ms="" first=""
    while (( $(ms_since "$t") < 10000 )); do
      kill -0 "$pid" 2> /dev/null || die "$1 exited at start"
      h=$(head_of "$port" 1k) || continue
      [ -n "$h" ] || continue
      [ -n "$first" ] || { first=$(is_hit <<< "$h" && echo hit || echo "not-a-hit:$(head -1 <<< "$h" | tr ' ' _)"); }
      if is_hit <<< "$h" || { [ "$1" = gh-nodisk ] && [[ $h == "HTTP/1.1 200"* ]]; }; then ms=$(ms_since "$t"); break; fi
    done
    [ -n "$ms" ] || die "$1 gave no hit within 10 s of its start"
    hits=0
    for p in 64k 1m 2m; do is_hit <<< "$(head_of "$port" "$p")" && hits=$((hits + 1)); done
    sleep 0.2   # an access log line written after the answer
    asked=$(( $(origin_asked) - o0 ))
    echo "$ms $first $asked $hits/3" >> "$WORK/restart.$1"
    stop "$pid"
    [ "$1" = nginx ] && NGINX="" || GHM=""
  done
}
echo "restarts" >&2
restarts gh
restarts nginx
restarts gh-nodisk
RESTART_GH=$(cut -d' ' -f1 "$WORK/restart.gh" | median) RESTART_NGX=$(cut -d' ' -f1 "$WORK/restart.nginx" | median)
ASKED_GH=$(awk '{n += $3} END {print n + 0}' "$WORK/restart.gh") ASKED_NGX=$(awk '{n += $3} END {print n + 0}' "$WORK/restart.nginx")
RESTART_COLD=$(cut -d' ' -f1 "$WORK/restart.gh-nodisk" | median)
WARN_M=$(grep -c '"level":"\(warn\|error\)"' "$WORK/gh-mem/gatehouse.log" || true) WARN_D=$(grep -c '"level":"\(warn\|error\)"' "$WORK/gh-disk/gatehouse.log" || true)

# Figures: medians over the rounds; ratio = gatehouse ÷ nginx req/s within each round, its median and range over the rounds.
paired() { # $1 path, $2 name: "median range"
  paste -d' ' "$WORK/res/$1.nginx" "$WORK/res/$1.$2" | awk '{print $10 / $1}' | sort -n |
    awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f %.2f–%.2f", m, a[1], a[NR]}'
}
row() { # $1 path, $2 name, $3 label
  local f=$WORK/res/$1.$2 r
  if [ "$2" = nginx ]; then r="1.00 —"; else r=$(paired "$1" "$2"); fi
  echo "| $3 | $(col "$f" 1) | $(col "$f" 8) | $(col "$f" 2) | $(col "$f" 3) | $(col "$f" 4) | **${r%% *}** | ${r#* } |"
}
bad=$(cat "$WORK"/res/* | awk '{n += $6 + $7} END {print n + 0}')
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
cpu() { col "$WORK/res/$1.$2" 4; }   # $1 path, $2 name: median CPU µs per request
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
TREE=$(git diff --quiet HEAD -- src 2> /dev/null && echo "working tree = HEAD" || echo "working tree, with uncommitted changes in src/")
growth() { # $1 name: RSS (MiB) after the first and the last run of each scenario
  for p in $PATHS; do awk -v p="$p" -v n="$1" '$1 == p && $3 == n {r[++c] = $4} END {printf "%s %.0f→%.0f", p, r[1] / 1024, r[c] / 1024}' "$WORK/mem"; echo -n "; "; done | sed 's/; $//'
}
{
  echo "# The cache's disk tier against nginx proxy_cache: hits of 1 KB to 2 MiB, and a restart with a warm cache"
  echo
  echo "Same run, $(date -u '+%Y-%m-%d %H:%M') UTC; gatehouse \`$(git rev-parse --short HEAD)\` ($TREE, compiled binary, \`workers = 1\`, access log off),"
  echo "$(nginx -v 2>&1 | sed 's/.*: //') (\`worker_processes 1\`, \`sendfile off\` as in every bench here, access log off), both proxies pinned to core $SRV_CPU;"
  echo "wrk \`-t2\` (keep-alive) and the origin on cores $REST_CPU; $CORES cores, shared with whatever else runs on this machine; $(uname -sr),"
  echo "Bun $(node_modules/.bin/bun --version). Both caches are files on the same ext4 file system (\`$(findmnt -no SOURCE -T "$WORK")\`), under /tmp."
  echo
  echo "- **nginx** \`proxy_cache\` (\`levels=1:2\`, \`use_temp_path=off\`, \`proxy_cache_lock on\`): every hit opens its file and reads it; after the"
  echo "  fills and the warm-up the files are in the **page cache**, so these are hits served from memory by way of the file system, never"
  echo "  from the device. nginx has no memory tier of its own for bodies; this is how it is deployed."
  echo "- **gatehouse, memory tier** (\`gh-mem\`): \`[cache] dir\`, \`disk_size = \"1GiB\"\`, \`max_size = \"256MiB\"\`, \`max_object_size = \"4MiB\"\`:"
  echo "  every object is in the memory tier too (and on disk behind it); Cache-Status \`$STATUS_MEM\`."
  echo "- **gatehouse, disk tier** (\`gh-disk\`): the same but \`max_size = \"1KiB\"\`: no object fits in memory, every hit is read from its file"
  echo "  (a lookup in the SQLite index, then the file read whole and its CRC-32 checked up to 1 MiB, or streamed with the CRC checked"
  echo "  as it goes above); Cache-Status \`$STATUS_DISK\`. Page cache warm here too."
  echo
  echo "The origin is nginx (1 worker, access log on, to count what reaches it): random bytes, \`Cache-Control: public, max-age=3600\`:"
  echo "\`/1k\` (1,024 bytes), \`/64k\` (65,536), \`/1m\` (1,000,000: with its head under the disk tier's 1 MiB read-whole bound; a body of"
  echo "1,048,576 bytes would already stream, the bound counts the whole file) and \`/2m\` (2,097,152: streamed from its file)."
  echo "One fill per object and proxy ($FILLS origin requests), then every answer checked: 200, the origin's bytes, and the right kind of hit"
  echo "(nginx \`X-Cache: HIT\`; gh-mem a hit without \`detail=disk\`; gh-disk \`detail=disk\`), again after the load. Requests that reached"
  echo "the origin during the load: $BENCH_ASKED. For each object a ${WARM} s warm-up of each, then $ROUNDS rounds of $SECS s, the order rotating;"
  echo "-c64 for 1 KB and 64 KB, -c8 for 1 MB and 2 MiB. Medians over the rounds; ratio = gatehouse ÷ nginx req/s within each round, the"
  echo "median and range of those. CPU is the server's (nginx: master, worker and cache processes) per request. \`bench/cache-disk.sh $ROUNDS $SECS\`,"
  echo "$(($(date +%s) - T0)) s in all."
  echo
  echo "| object | server | req/s | MiB/s | p50 ms | p99 ms | CPU µs/req | ratio | range |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for p in $PATHS; do
    row "$p" nginx "${LABEL[$p]} (-c${CONNS[$p]}) | nginx proxy_cache"
    row "$p" gh-mem "${LABEL[$p]} (-c${CONNS[$p]}) | gatehouse, memory tier"
    row "$p" gh-disk "${LABEL[$p]} (-c${CONNS[$p]}) | gatehouse, disk tier"
  done
  echo
  echo "Non-2xx responses and socket errors over all rounds: $bad."
  echo
  echo "**Restart with a warm cache** ($RESTARTS restarts each, after the runs above; stopped with SIGTERM each time): spawn to the first"
  echo "answer to \`/1k\` that is a hit, polled with bash's \`/dev/tcp\` (a new connection per attempt), then \`/64k\`, \`/1m\`, \`/2m\` once each."
  echo "- gatehouse (the gh-mem config: an empty memory tier, so these are disk hits): median **$RESTART_GH ms** ($(cut -d' ' -f1 "$WORK/restart.gh" | tr '\n' ' ' | sed 's/ $//') ms);"
  echo "  first answer a hit in $(grep -c ' hit ' "$WORK/restart.gh" || true) of $RESTARTS; the other three objects hits in $(awk '{split($4, a, "/"); n += a[1]} END {print n + 0}' "$WORK/restart.gh") of $((RESTARTS * 3)); requests that reached the origin: **$ASKED_GH**."
  echo "- nginx: median **$RESTART_NGX ms** ($(cut -d' ' -f1 "$WORK/restart.nginx" | tr '\n' ' ' | sed 's/ $//') ms); first answer a hit in $(grep -c ' hit ' "$WORK/restart.nginx" || true) of $RESTARTS;"
  echo "  the other three hits in $(awk '{split($4, a, "/"); n += a[1]} END {print n + 0}' "$WORK/restart.nginx") of $((RESTARTS * 3)); requests that reached the origin: **$ASKED_NGX**."
  echo "- For scale, gatehouse with the same config but no \`dir\` (no disk tier; an empty cache, so a miss fetched from the origin):"
  echo "  spawn to the first 200 on \`/1k\`, median $RESTART_COLD ms ($(cut -d' ' -f1 "$WORK/restart.gh-nodisk" | tr '\n' ' ' | sed 's/ $//') ms)."
  echo
  echo "**Memory and files.** gatehouse RSS, idle after the fills → at the end (peak VmHWM): memory tier $(mib "$IDLE_RSS_M") → $(mib "$END_RSS_M") MiB"
  echo "(peak $(mib "$HWM_M")), disk tier $(mib "$IDLE_RSS_D") → $(mib "$END_RSS_D") MiB (peak $(mib "$HWM_D")); nginx worker peak $(mib "${NGX_RSS:-0}") MiB."
  echo "RSS after the first and the last round of each object, MiB: memory tier $(growth gh-mem); disk tier $(growth gh-disk)."
  echo "Open file descriptors, idle → end: memory tier $IDLE_FD_M → $END_FD_M, disk tier $IDLE_FD_D → $END_FD_D. Warnings and errors in the"
  echo "gatehouse logs: $WARN_M (memory tier), $WARN_D (disk tier). On disk: gatehouse $DISK_BYTES_GH bytes of object files, nginx $DISK_BYTES_NGX."
  echo
  echo "## What the numbers say"
  echo
  echo "- **Memory tier against nginx.** CPU per request, gatehouse ÷ nginx: 1 KB $(div "$(cpu 1k gh-mem)" "$(cpu 1k nginx)")×, 64 KB $(div "$(cpu 64k gh-mem)" "$(cpu 64k nginx)")×,"
  echo "  1 MB $(div "$(cpu 1m gh-mem)" "$(cpu 1m nginx)")×, 2 MiB $(div "$(cpu 2m gh-mem)" "$(cpu 2m nginx)")× (nginx reads every hit from its file, with \`sendfile off\`)."
  echo "- **What a disk-tier hit costs.** CPU per request over a memory-tier hit: 1 KB +$(( $(cpu 1k gh-disk) - $(cpu 1k gh-mem) )) µs, 64 KB +$(( $(cpu 64k gh-disk) - $(cpu 64k gh-mem) )) µs,"
  echo "  1 MB +$(( $(cpu 1m gh-disk) - $(cpu 1m gh-mem) )) µs, 2 MiB +$(( $(cpu 2m gh-disk) - $(cpu 2m gh-mem) )) µs; against nginx, whose every hit is a file read too: $(div "$(cpu 1k gh-disk)" "$(cpu 1k nginx)")×, $(div "$(cpu 64k gh-disk)" "$(cpu 64k nginx)")×,"
  echo "  $(div "$(cpu 1m gh-disk)" "$(cpu 1m nginx)")×, $(div "$(cpu 2m gh-disk)" "$(cpu 2m nginx)")× its CPU. Per hit the disk tier does, besides what a memory hit does: the memory-tier"
  echo "  miss and the asynchronous path after it, two SQLite point queries (the Vary names, the object's row), open, fstat, read and close"
  echo "  of the file, a JSON parse of its head, a CRC-32 of the whole body, new header fields; up to 1 MiB the entry is then offered to the"
  echo "  memory tier (here refused: 1 KiB). Above 1 MiB the body streams from \`Bun.file\` through a \`TransformStream\` that checks the CRC."
  echo "- **These are worst cases.** With a memory tier of real size a disk hit happens only for what memory evicted or after a restart, and"
  echo "  an object up to 1 MiB read from disk goes back into memory. An object over 1 MiB does not: after a restart every hit on it streams"
  echo "  from its file, at the 2 MiB row's disk-tier cost, for as long as it stays fresh there."
  echo "- **Page cache warm, for both.** No hit here touched the device. On a cold page cache each server's one process waits for the device:"
  echo "  nginx without \`aio\` blocks its worker in read(), and gatehouse reads objects up to 1 MiB with \`readSync\` on its event loop. Not measured."
  echo "- **Restart.** With the warm disk tier the first request after a restart was a hit in $(grep -c ' hit ' "$WORK/restart.gh" || true) of $RESTARTS restarts, the origin asked"
  echo "  $ASKED_GH times in all. Spawn to that hit: $RESTART_GH ms, against $RESTART_COLD ms to a first answer with no disk tier at all (a miss):"
  echo "  the difference is what opening the tier costs (less the other's miss to the origin); the rest is gatehouse's own start, against"
  echo "  nginx's $RESTART_NGX ms. nginx needs no loaded index for its first hit: its cache loader starts a minute after the master, and a request"
  echo "  for a key not yet loaded opens the file named by the key's hash."
  echo "- **Noise.** The two cores are shared with other jobs: req/s and p99 move between rounds (the ranges show how far); CPU per request"
  echo "  moves least. Where it falls over the rounds below (first rounds against the last), the ${WARM} s warm-up was too short for that path."
  echo
  echo "Raw records per object (req/s, p50, p99, CPU µs/req, new connections/req, non-2xx, socket errors, MiB/s, max ms): nginx, then"
  echo "gatehouse memory tier, then disk tier; then the restarts (ms, first answer, origin requests, other hits)."
  echo
  echo '```'
  for p in $PATHS; do echo "/$p"; cat "$WORK/res/$p.nginx"; echo; cat "$WORK/res/$p.gh-mem"; echo; cat "$WORK/res/$p.gh-disk"; echo; done
  echo "restarts, gatehouse"; cat "$WORK/restart.gh"; echo "restarts, nginx"; cat "$WORK/restart.nginx"; echo "starts, gatehouse without a disk tier"; cat "$WORK/restart.gh-nodisk"
  echo '```'
} > "$WORK/CACHE-DISK.md"

# The rows in bench/RESULTS.md's first table: the disk tier's ("| disk tier…") replaced where they are, else added after the table's last row.
rrow() { # $1 path
  local f=$WORK/res/$1 r
  r=$(paired "$1" gh-disk)
  echo "| disk tier: cache hit ${LABEL[$1]} (\`/$1\`, HTTP, -c${CONNS[$1]}; memory tier 1 KiB, every hit read from its file; nginx \`proxy_cache\` on ext4, page cache warm; memory tier: $(paired "$1" gh-mem | cut -d' ' -f1)×; its own run: \`bench/cache-disk.sh $ROUNDS $SECS\`, [CACHE-DISK.md](CACHE-DISK.md)) | $(col "$f.nginx" 1) | $(col "$f.gh-disk" 1) | **${r%% *}** | $(col "$f.nginx" 2) / $(col "$f.nginx" 3) | $(col "$f.gh-disk" 2) / $(col "$f.gh-disk" 3) | — |"
}
{
  for p in $PATHS; do rrow "$p"; done
  echo "| disk tier: restart with a warm cache, spawn to the first hit (median of $RESTARTS; origin requests: nginx $ASKED_NGX, gatehouse $ASKED_GH; [CACHE-DISK.md](CACHE-DISK.md)) | $RESTART_NGX ms | $RESTART_GH ms | — | — | — | — |"
} > "$WORK/rows"
cp "$WORK/CACHE-DISK.md" bench/CACHE-DISK.md
if [ -f bench/RESULTS.md ]; then
  awk -v rows="$WORK/rows" '
    function put() { while ((getline l < rows) > 0) print l; done = 1 }
    /^\| disk tier: / { if (!done) put(); next }
    /^\| scenario \|/ { table = 1 }
    table && !/^\|/ { if (!done) put(); table = 0 }
    { print }
    END { if (!done) put() }' bench/RESULTS.md > "$WORK/RESULTS.md" && cp "$WORK/RESULTS.md" bench/RESULTS.md
fi
cat bench/CACHE-DISK.md
