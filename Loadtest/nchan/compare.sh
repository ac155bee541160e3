#!/usr/bin/env bash
# Side-by-side fan-out benchmark: the gateway against Nchan (nginx + libnginx-mod-nchan,
# channels kept in Redis), the same `loadtest fanout` scenario alternately against each,
# N rounds. Prints the deliveries/s of every run, both medians, and as its last line
#   fanout deliveries/s ratio gateway/nchan: X.XX
#
# Everything runs on 127.0.0.1: a private redis-server and a private nginx (own prefix,
# config and free ports in a temp folder) for Nchan; the gateway runs are spawned by
# loadtest itself with their own private Redis, as usual. Stops all of it on exit.
#
#   Loadtest/nchan/compare.sh                  # defaults below, builds release binaries
#   Loadtest/nchan/compare.sh --rounds 5 --rate 1000 --nginx-workers 2 --no-build
set -euo pipefail

ROUNDS=3
SUBSCRIBERS=1000
CHANNELS=1
RATE=1000          # publications/s asked for: above what either server sustains, see README
DURATION=5
PAYLOAD=0
PUBLISHERS=""      # default: loadtest's (rate/25, 4 to 64)
WORKERS=2          # subscriber processes: lets the client use both cores when the server idles
NGINX_WORKERS=1    # the gateway node runs its sockets on one loop thread
BUILD=1
SCRATCH=""
REPORTS=""
EXTRA=()

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options (defaults in brackets):
  --rounds N [$ROUNDS]  --subscribers S [$SUBSCRIBERS]  --channels G [$CHANNELS]  --rate P [$RATE]
  --duration D [$DURATION]  --payload BYTES [$PAYLOAD]  --publishers N  --workers N [$WORKERS]
  --nginx-workers N [$NGINX_WORKERS]  --no-build  --scratch-path DIR [.build]
  --report-dir DIR [Loadtest/reports/nchan-compare-<time>]  -- ARGS (passed to every loadtest fanout)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --subscribers) SUBSCRIBERS=$2; shift 2 ;;
        --channels) CHANNELS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --payload) PAYLOAD=$2; shift 2 ;;
        --publishers) PUBLISHERS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --nginx-workers) NGINX_WORKERS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --scratch-path) SCRATCH=$2; shift 2 ;;
        --report-dir) REPORTS=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SCRATCH=${SCRATCH:-$ROOT/.build}
REPORTS=${REPORTS:-$ROOT/Loadtest/reports/nchan-compare-$(date -u +%Y%m%d-%H%M%S)}
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
say() { echo "compare: $*" >&2; }

# --- What is missing from Debian, installed with apt-get only then. ---
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[ -f "$NCHAN_MODULE" ] || missing+=(libnginx-mod-nchan)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        # Newer Debian folds nginx-light into nginx.
        apt-get install -y -qq --no-install-recommends "${missing[@]/nginx-light/nginx}"
    fi
fi
[ -f "$NCHAN_MODULE" ] || { say "no $NCHAN_MODULE after installing libnginx-mod-nchan"; exit 1; }
say "$(nginx -v 2>&1), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?'), $(redis-server --version | cut -d' ' -f1-3)"

# --- Release binaries. ---
if [ "$BUILD" = 1 ]; then
    say "building release gateway and loadtest in $SCRATCH"
    swift build -c release --scratch-path "$SCRATCH" --product gateway >&2
    swift build -c release --scratch-path "$SCRATCH" --product loadtest >&2
fi
BIN=$SCRATCH/release
[ -x "$BIN/gateway" ] && [ -x "$BIN/loadtest" ] || { say "no $BIN/gateway or $BIN/loadtest (drop --no-build)"; exit 1; }

# --- Private Redis + nginx for Nchan, stopped on exit. ---
TMP=$(mktemp -d /tmp/nchan-compare.XXXXXX)
REDIS_PID=""
NGINX_PID=""
cleanup() {
    local code=$?
    trap - EXIT INT TERM
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    [ -f "$TMP/error.log" ] && cp "$TMP/error.log" "$REPORTS/nginx-error.log" 2>/dev/null || true
    rm -rf "$TMP"
    exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on (the kernel may still hand it out later; ports are checked at start).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
    done
}

mkdir -p "$REPORTS" "$TMP"/{body,proxy,fastcgi,uwsgi,scgi}
# nginx workers drop to `nobody` when started as root.
chmod 755 "$TMP"; chmod 777 "$TMP"/{body,proxy,fastcgi,uwsgi,scgi}

REDIS_PORT=$(free_port)
# The same Redis settings as the gateway's private one (loadtest: AOF, fsync every second, no RDB).
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP" --save "" --appendonly yes --appendfsync everysec \
    --daemonize no --protected-mode yes --logfile "$TMP/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { say "redis-server exited: $(tail -3 "$TMP/redis.log")"; exit 1; }
    sleep 0.1
done

NGINX_PORT=$(free_port)
sed -e "s#@PREFIX@#$TMP#g" -e "s#@PORT@#$NGINX_PORT#g" -e "s#@REDIS_PORT@#$REDIS_PORT#g" -e "s#@WORKERS@#$NGINX_WORKERS#g" \
    "$ROOT/Loadtest/nchan/nginx.conf.template" > "$TMP/nginx.conf"
nginx -q -t -p "$TMP" -c "$TMP/nginx.conf" 2>&1 | grep -v '^$' >&2 || true
nginx -p "$TMP" -c "$TMP/nginx.conf" 2>>"$TMP/error.log" &
NGINX_PID=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$NGINX_PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$NGINX_PID" 2>/dev/null || { say "nginx exited: $(tail -5 "$TMP/error.log")"; exit 1; }
    sleep 0.1
done
NGINX_WORKER_PIDS=$(ps -o pid= --ppid "$NGINX_PID" | tr -s ' \n' ' ')
say "redis-server :$REDIS_PORT (pid $REDIS_PID), nginx :$NGINX_PORT (master $NGINX_PID, workers $NGINX_WORKER_PIDS)"

# --- The same fan-out against both, alternating which goes first. ---
COMMON=(fanout --subscribers "$SUBSCRIBERS" --channels "$CHANNELS" --rate "$RATE" --duration "$DURATION" --payload "$PAYLOAD")
[ -n "$PUBLISHERS" ] && COMMON+=(--publishers "$PUBLISHERS")
[ -n "$WORKERS" ] && COMMON+=(--workers "$WORKERS")
NCHAN_ARGS=(--target nchan --nchan-url "http://127.0.0.1:$NGINX_PORT" --nchan-redis-pid "$REDIS_PID")
for w in $NGINX_WORKER_PIDS; do NCHAN_ARGS+=(--nchan-pid "$w"); done

declare -a GATEWAY_RATES NCHAN_RATES GATEWAY_COST NCHAN_COST
run_one() {   # target round -> "deliveries/s server-µs-per-delivery" on stdout
    local target=$1 round=$2 dir="$REPORTS/$1-r$2" args=()
    [ "$target" = nchan ] && args=("${NCHAN_ARGS[@]}") || args=(--gateway "$BIN/gateway")
    mkdir -p "$dir"
    say "round $round: $target"
    if ! "$BIN/loadtest" "${COMMON[@]}" "${args[@]}" --report-dir "$dir" ${EXTRA[@]+"${EXTRA[@]}"} > "$dir/output.txt" 2>&1; then
        say "round $round $target: loadtest failed: $(tail -3 "$dir/output.txt")"
    fi
    local report
    report=$(ls "$dir"/fanout-*.json 2>/dev/null | head -1)
    if [ -z "$report" ]; then echo "0 0"; return; fi
    grep -E '^(deliveries|checks|latency|server cost|cpu|verdict) ' "$dir/output.txt" | sed "s/^/  $target r$round  /" >&2 || true
    jq -r '"\(.deliveries.perSecond) \(.deliveries.gatewayCpuMicrosPerDelivery // 0)"' "$report"
}

for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="gateway nchan"; else order="nchan gateway"; fi
    for target in $order; do
        read -r v cost < <(run_one "$target" "$r")
        if [ "$target" = gateway ]; then GATEWAY_RATES+=("$v"); GATEWAY_COST+=("$cost")
        else NCHAN_RATES+=("$v"); NCHAN_COST+=("$cost"); fi
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
G=$(median "${GATEWAY_RATES[@]}")
N=$(median "${NCHAN_RATES[@]}")
say "reports in $REPORTS"
printf 'server CPU per delivery: gateway node %.2f us, nchan nginx %.2f us (medians)\n' \
    "$(median "${GATEWAY_COST[@]}")" "$(median "${NCHAN_COST[@]}")"
printf 'parameters: %s subscribers, %s channel(s), %s publications/s asked for %s s, payload %s B, nginx workers %s, %s round(s)\n' \
    "$SUBSCRIBERS" "$CHANNELS" "$RATE" "$DURATION" "$PAYLOAD" "$NGINX_WORKERS" "$ROUNDS"
printf 'gateway deliveries/s: %s (median %.0f)\n' "$(printf '%.0f ' "${GATEWAY_RATES[@]}")" "$G"
printf 'nchan deliveries/s: %s (median %.0f)\n' "$(printf '%.0f ' "${NCHAN_RATES[@]}")" "$N"
awk -v g="$G" -v n="$N" 'BEGIN { printf "fanout deliveries/s ratio gateway/nchan: %.2f\n", (n > 0 ? g / n : 0) }'
