#!/usr/bin/env bash
# Two git revisions of gatehouse (A and B) built and run side by side, interleaved round by round, to show whether throughput changed.
# Each revision is exported to a temp dir (the repository's node_modules symlinked in) and built as the compiled binary; both sit
# in front of the same nginx origin (1 worker) with the same config. Scenarios (wrk -t2 -c64): proxied uncacheable 1 KB,
# cache hits of 1 KB and 64 KB over plain HTTP, and over HTTPS keep-alive (a `tls = "manual"` site with an ECDSA P-256
# certificate made in the work dir, SNI bench.test) proxied uncacheable 1 KB and cache hit 1 KB.
# Writes bench/COMPARE.md and prints it. Needs Debian's nginx, wrk, openssl and curl.
# Usage: bench/compare.sh REV_A REV_B [ROUNDS] [SECONDS]   (defaults 5 and 5, or ROUNDS=… SECONDS=… in the environment)
#   REV is any git revision (HEAD, main~3, a commit id, …) or WORKTREE: the working tree as it is, uncommitted and untracked
#   (non-ignored) files included. Example: bench/compare.sh HEAD WORKTREE
set -euo pipefail
ENV_SECS=$(printenv SECONDS || true)   # bash's own SECONDS counter shadows the variable; an exported one is still readable here
T0=$(date +%s)
cd "$(dirname "$0")/.."
. bench/lib.sh

usage() { echo "usage: bench/compare.sh REV_A REV_B [ROUNDS] [SECONDS]  (REV: a git revision or WORKTREE; ROUNDS, SECONDS: positive integers, default 5 and 5)" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 4 ] || usage
REV_A=$1 REV_B=$2
ROUNDS=${3:-${ROUNDS:-5}}
SECS=${4:-${ENV_SECS:-5}}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || usage
WARM=$(( SECS < 2 ? SECS : 2 ))   # warm-up of each instance before each scenario, seconds
CONNS=64
HOST=bench.test
ORIGIN_PORT=18121 A_PORT=18122 A_ADMIN=18123 B_PORT=18124 B_ADMIN=18125 A_TLS=18126 B_TLS=18127   # apart from bench/run.sh's 18101–18112

[ -x /usr/sbin/nginx ] && PATH=$PATH:/usr/sbin
for tool in nginx wrk openssl curl git tar; do
  command -v "$tool" >/dev/null || { echo "bench/compare.sh: $tool is missing (Debian: apt-get install nginx wrk openssl curl)" >&2; exit 1; }
done
[ -x node_modules/.bin/bun ] || { echo "bench/compare.sh: node_modules/.bin/bun is missing (npm install first)" >&2; exit 1; }
for port in $ORIGIN_PORT $A_PORT $A_ADMIN $B_PORT $B_ADMIN $A_TLS $B_TLS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "bench/compare.sh: port $port on 127.0.0.1 is already in use" >&2; exit 1; fi
done
# Resolve both revisions before any work: "name commit" (commit = the full id, or for WORKTREE the HEAD it sits on).
resolve() {
  if [ "$1" = WORKTREE ]; then timeout 30 git rev-parse --verify --quiet 'HEAD^{commit}'
  else timeout 30 git rev-parse --verify --quiet "$1^{commit}" || { echo "bench/compare.sh: $1 is not a git revision here" >&2; exit 2; }; fi
}
COMMIT_A=$(resolve "$REV_A")
COMMIT_B=$(resolve "$REV_B")

WORK=$(mktemp -d /tmp/gatehouse-compare.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as www-data
pids=() PID_A="" PID_B=""
cleanup() {
  local p
  for p in "${pids[@]}" $PID_A $PID_B; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $PID_A $PID_B; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"   # the node_modules symlinks in the exported trees are removed, not followed
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
  echo "bench/compare.sh: $*" >&2
  for f in "$WORK"/build-a.log "$WORK"/build-b.log "$WORK"/origin/error.log "$WORK"/a/check.log "$WORK"/b/check.log "$WORK"/a/gatehouse.log "$WORK"/b/gatehouse.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
  done
  exit 1
}

# Export and build one revision: $1 REV, $2 its commit, $3 a or b. The tree goes to $WORK/tree-$3, the binary to
# $WORK/tree-$3/dist/gatehouse. A revision is exported by its commit id, resolved above, so a moving branch changes nothing.
export_and_build() {
  local rev=$1 commit=$2 x=$3 dir=$WORK/tree-$3
  mkdir -p "$dir"
  if [ "$rev" = WORKTREE ]; then
    # Tracked and untracked non-ignored files; tracked files deleted in the working tree are skipped.
    timeout 60 git ls-files -z -co --exclude-standard > "$WORK/files-$x.all" || die "git ls-files failed"
    while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done < "$WORK/files-$x.all" > "$WORK/files-$x"
    timeout 120 tar -c --null -T "$WORK/files-$x" | timeout 120 tar -x -C "$dir" || die "cannot copy the working tree"
  else
    timeout 120 git archive "$commit" | timeout 120 tar -x -C "$dir" || die "git archive $rev failed"
  fi
  ln -s "$PWD/node_modules" "$dir/node_modules"
  echo "building $rev ($x)" >&2
  (cd "$dir" && timeout 600 node_modules/.bin/bun build --compile --no-compile-autoload-bunfig --no-compile-autoload-dotenv --no-compile-autoload-tsconfig --no-compile-autoload-package-json --minify --bytecode src/main.ts --outfile dist/gatehouse) \
    > "$WORK/build-$x.log" 2>&1 || die "cannot build $rev"
  [ -x "$dir/dist/gatehouse" ] || die "the build of $rev left no dist/gatehouse"
}
export_and_build "$REV_A" "$COMMIT_A" a
export_and_build "$REV_B" "$COMMIT_B" b
BIN_A=$WORK/tree-a/dist/gatehouse BIN_B=$WORK/tree-b/dist/gatehouse
# For the report: "name (commit)"; a WORKTREE gets a digest of the files it was built from, to tell two states apart.
describe() { # $1 REV, $2 commit, $3 a | b
  if [ "$1" = WORKTREE ]; then
    local digest
    digest=$(cd "$WORK/tree-$3" && find . -path ./node_modules -prune -o -path ./dist -prune -o -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
    echo "WORKTREE (uncommitted state on HEAD \`${2:0:12}\`, files digest \`$digest\`)"
  else echo "\`$1\` (\`${2:0:12}\`)"; fi
}
DESC_A=$(describe "$REV_A" "$COMMIT_A" a) DESC_B=$(describe "$REV_B" "$COMMIT_B" b)

# Origin content: cacheable 1 KB and 64 KB, an uncacheable 1 KB.
mkdir -p "$WORK/www/nostore" "$WORK/origin" "$WORK/a/routes" "$WORK/b/routes"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/1k"
head -c 65536 /dev/zero | tr '\0' 'y' > "$WORK/www/64k"
cp "$WORK/www/1k" "$WORK/www/nostore/1k"
# One ECDSA P-256 certificate for the HTTPS rows (as bench/run.sh): the IP name because the route lists 127.0.0.1 among its
# hosts and `check` refuses a manual certificate that does not cover every host of the site.
timeout 20 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || die "openssl cannot make the certificate"
sni_script "$WORK/sni.lua"
nginx_conf "$WORK/origin" "server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www;
    location / { add_header Cache-Control \"public, max-age=3600\"; }
    location /nostore/ { add_header Cache-Control no-store; } }"

# The same config for both instances (HTTP and HTTPS, access log off), each in its own dir with its own ports.
for x in a b; do
  if [ $x = a ]; then port=$A_PORT admin=$A_ADMIN tls=$A_TLS; else port=$B_PORT admin=$B_ADMIN tls=$B_TLS; fi
  WORK=$WORK/$x GH_PORT=$port GH_ADMIN=$admin GH_ACCESS_LOG=false gh_config "https = \"127.0.0.1:$tls\"" "[cache]
max_size = \"256MiB\""
  gh_site "$WORK/$x/routes/bench.toml"
done
timeout 60 "$BIN_A" check -c "$WORK/a/config.toml" > "$WORK/a/check.log" 2>&1 || die "gatehouse check ($REV_A) refused the bench config"
timeout 60 "$BIN_B" check -c "$WORK/b/config.toml" > "$WORK/b/check.log" 2>&1 || die "gatehouse check ($REV_B) refused the bench config"

nginx -c "$WORK/origin/nginx.conf" & pids+=($!)
for _ in $(seq 50); do curl -sf --max-time 1 "http://127.0.0.1:$ORIGIN_PORT/1k" >/dev/null && break; sleep 0.1; done
curl -sf --max-time 1 "http://127.0.0.1:$ORIGIN_PORT/1k" >/dev/null || die "the origin nginx does not answer"
"$BIN_A" run -c "$WORK/a/config.toml" >> "$WORK/a/gatehouse.log" 2>&1 & PID_A=$!
"$BIN_B" run -c "$WORK/b/config.toml" >> "$WORK/b/gatehouse.log" 2>&1 & PID_B=$!
for port in $A_PORT $B_PORT; do
  for _ in $(seq 100); do curl -sf --max-time 1 "http://127.0.0.1:$port/nostore/1k" >/dev/null && break; sleep 0.1; done
  curl -sf --max-time 1 "http://127.0.0.1:$port/nostore/1k" >/dev/null || die "gatehouse on port $port does not serve /nostore/1k"
done
# Fill both caches, then check that both answer from them and that /nostore/1k is not stored.
for port in $A_PORT $B_PORT; do
  for f in 1k 64k; do for _ in 1 2; do curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$port/$f" || die "gatehouse on port $port does not serve /$f"; done; done
  for f in 1k 64k; do
    curl -sI --max-time 5 "http://127.0.0.1:$port/$f" | grep -qi "cache-status: gatehouse; hit" || die "gatehouse on port $port is not answering /$f from its cache"
  done
  curl -sI --max-time 5 "http://127.0.0.1:$port/nostore/1k" | grep -qi "cache-status: gatehouse; hit" && die "gatehouse on port $port answers /nostore/1k from its cache"
done
# The same over HTTPS, by the site's name (SNI and Host bench.test): a 200, and /1k from the cache.
for port in $A_TLS $B_TLS; do
  tc=(-sk --max-time 5 --resolve "$HOST:$port:127.0.0.1")
  [ "$(curl "${tc[@]}" -o /dev/null -w '%{http_code}' "https://$HOST:$port/nostore/1k")" = 200 ] || die "gatehouse on port $port does not serve https://$HOST/nostore/1k"
  for _ in 1 2; do curl "${tc[@]}" -o /dev/null "https://$HOST:$port/1k" || die "gatehouse on port $port does not serve https://$HOST/1k"; done
  curl "${tc[@]}" -I "https://$HOST:$port/1k" | grep -qi "cache-status: gatehouse; hit" || die "gatehouse on port $port is not answering https://$HOST/1k from its cache"
done

runner() { # $1 scenario, $2 a | b, $3 seconds. HTTPS rows name the site (SNI and Host bench.test) and connect to 127.0.0.1.
  local pid port
  if [ "$2" = a ]; then pid=$PID_A; else pid=$PID_B; fi
  if [[ $1 == tls_* ]]; then
    [ "$2" = a ] && port=$A_TLS || port=$B_TLS
    run_wrk "$pid" "$3" "$CONNS" "https://$HOST:$port${PATHS[$1]}" -s "$WORK/sni.lua"
  else
    [ "$2" = a ] && port=$A_PORT || port=$B_PORT
    run_wrk "$pid" "$3" "$CONNS" "http://127.0.0.1:$port${PATHS[$1]}"
  fi
}
alive() {
  kill -0 "$PID_A" 2>/dev/null || die "gatehouse A ($REV_A) died during $1"
  kill -0 "$PID_B" 2>/dev/null || die "gatehouse B ($REV_B) died during $1"
  kill -0 "${pids[0]}" 2>/dev/null || die "the origin nginx died during $1"
}

SCENARIOS=(nostore hit1k hit64k tls_nostore tls_hit1k)
declare -A PATHS=([nostore]=/nostore/1k [hit1k]=/1k [hit64k]=/64k [tls_nostore]=/nostore/1k [tls_hit1k]=/1k)
declare -A TITLE=([nostore]="proxied uncacheable 1 KB (\`/nostore/1k\`)" [hit1k]="cache hit 1 KB (\`/1k\`)" [hit64k]="cache hit 64 KB (\`/64k\`)"
  [tls_nostore]="HTTPS keep-alive, proxied uncacheable 1 KB (\`/nostore/1k\`)" [tls_hit1k]="HTTPS keep-alive, cache hit 1 KB (\`/1k\`)")
for s in "${SCENARIOS[@]}"; do
  runner "$s" a "$WARM" >/dev/null; runner "$s" b "$WARM" >/dev/null   # warm-up
  : > "$WORK/a-$s.txt"; : > "$WORK/b-$s.txt"
  for r in $(seq "$ROUNDS"); do
    # Odd rounds A then B, even rounds B then A: neither always runs first.
    if (( r % 2 )); then order="a b"; else order="b a"; fi
    for x in $order; do runner "$s" "$x" "$SECS" >> "$WORK/$x-$s.txt"; done
    echo "$s round $r ($([ "$order" = "a b" ] && echo "A first" || echo "B first")): A $(tail -1 "$WORK/a-$s.txt") | B $(tail -1 "$WORK/b-$s.txt")" >&2
  done
  alive "$s"
done
ELAPSED=$(( $(date +%s) - T0 ))

minmax() { cut -d' ' -f"$2" "$1" | sort -n | awk 'NR == 1 {a=$1} {b=$1} END {print a "–" b}'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN {printf f, v}'; }
{
  echo "# gatehouse: revision A against revision B"
  echo
  echo "- A: $DESC_A"
  echo "- B: $DESC_B"
  echo
  echo "Loopback, same run: $(date -u '+%Y-%m-%d %H:%M UTC'); machine $(nproc) cores, Linux $(uname -r); $(nginx -v 2>&1 | sed 's/.*: //'),"
  echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), Bun $(node_modules/.bin/bun --version) (this repository's node_modules, for both builds)."
  echo "ROUNDS = $ROUNDS, SECONDS = $SECS; whole run ${ELAPSED} s (\`bench/compare.sh $REV_A $REV_B $ROUNDS $SECS\`)."
  echo
  echo "Each revision exported and built as the compiled binary (\`bun build --compile --minify --bytecode\`); both instances run at"
  echo "once, one process each, with the same config: HTTP and HTTPS listeners, access log off, \`[cache]\` (max_size 256MiB), one site"
  echo "(\`tls = \"manual\"\`, an ECDSA P-256 certificate made by this run) proxying to an nginx origin (1 worker; \`/1k\` and \`/64k\` with"
  echo "\`Cache-Control: public, max-age=3600\`, \`/nostore/1k\` with \`no-store\` and the cache off on \`/nostore/\`). wrk \`-t2 -c$CONNS --latency\`;"
  echo "the HTTPS rows keep their connections open and name the site (\`https://$HOST:PORT/…\` with a wrk script that connects to"
  echo "127.0.0.1, so SNI and Host are $HOST). Per scenario a ${WARM} s warm-up of each, then $ROUNDS round(s)"
  echo "of ${SECS} s each for A and B, A first in odd rounds and B first in even ones."
  echo "Figures: medians over the rounds, with min–max; \"B/A\" is median B req/s ÷ median A req/s; \"paired B/A\" is the min–max of"
  echo "B ÷ A within each round; \"A spread\" is A's min and max ÷ its median, i.e. how much A moves by itself. A B/A inside A's"
  echo "spread, or paired ratios on both sides of 1.0, is not a difference this run can show (with few rounds A's spread understates"
  echo "the noise). CPU is the server's utime + stime per request, the steadier figure on a busy machine."
  echo
  echo "| scenario | A req/s | A min–max | B req/s | B min–max | **B/A** | paired B/A min–max | A spread | A p99 ms | B p99 ms | CPU µs/req A / B |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for s in "${SCENARIOS[@]}"; do
    a="$WORK/a-$s.txt" b="$WORK/b-$s.txt"
    a_rps=$(col "$a" 1) b_rps=$(col "$b" 1)
    ratio=$(awk -v x="$b_rps" -v y="$a_rps" 'BEGIN {printf "%.3f", y ? x/y : 0}')
    paired=$(paste -d' ' "$a" "$b" | awk '{r = $1 ? $10/$1 : 0; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r} END {printf "%.3f–%.3f", lo, hi}')
    spread=$(cut -d' ' -f1 "$a" | awk -v m="$a_rps" 'NR == 1 || $1 < lo {lo = $1} NR == 1 || $1 > hi {hi = $1} END {printf "%.3f–%.3f", m ? lo/m : 0, m ? hi/m : 0}')
    echo "| ${TITLE[$s]} | $(fmt "$a_rps" %.0f) | $(minmax "$a" 1) | $(fmt "$b_rps" %.0f) | $(minmax "$b" 1) | **$ratio** | $paired | $spread | $(fmt "$(col "$a" 3)" %.2f) | $(fmt "$(col "$b" 3)" %.2f) | $(col "$a" 4) / $(col "$b" 4) |"
  done
  echo
  errs=$(cat "$WORK"/a-*.txt | awk '{n += $6; e += $7} END {print n + 0 " non-2xx, " e + 0 " socket errors"}')
  errs_b=$(cat "$WORK"/b-*.txt | awk '{n += $6; e += $7} END {print n + 0 " non-2xx, " e + 0 " socket errors"}')
  echo "Over all rounds: A $errs; B $errs_b."
  echo
  echo "## Rounds"
  echo
  echo "Per run: req/s, p50 ms, p99 ms, server CPU µs per request, new connections per request, non-2xx responses, socket errors, MiB/s, max ms."
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "${TITLE[$s]}:"
    echo
    paste -d'|' "$WORK/a-$s.txt" "$WORK/b-$s.txt" | awk -F'|' '{print "- round " NR " (" (NR % 2 ? "A first" : "B first") "): A " $1 " · B " $2}'
  done
  echo
  echo "Rerun: \`bash bench/compare.sh REV_A REV_B [ROUNDS] [SECONDS]\` (REV a git revision or WORKTREE; needs Debian's nginx, wrk, openssl and curl)."
} > bench/COMPARE.md
cat bench/COMPARE.md
echo "bench/compare.sh: done in ${ELAPSED} s" >&2
