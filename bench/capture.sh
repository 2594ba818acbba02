#!/usr/bin/env bash
# bench/capture.sh: captured POST throughput against plain POST proxying
# (issue 5), with wrk as the client. See "Capture and delivery" in
# BENCHMARKS.md; the Go benchmarks in caddymodule/capture_bench_test.go
# measure the same with a Go client, and the drain rate.
#
# Starts, on 127.0.0.1:
#   an upstream: a second Caddy answering every request with a short 200,
#   the leadproxy Caddy (./cmd/caddy) with two sites on the same upstream:
#     captured: leadproxy with a `post /lead` rule; every POST is a lead,
#               stored with an fsync before it is proxied (no destination),
#     plain:    reverse_proxy only,
# then, in alternating rounds, POSTs urlencoded forms, each with a unique
# phone (so none is merged as a duplicate), over CONNS keep-alive
# connections to each site, and counts the fsync calls of the leadproxy
# Caddy during the captured rounds (perf stat, if perf is installed).
# Prints the rates, the ratio, leads per fsync, and the CPU time the
# leadproxy Caddy spends per request in each mode (/proc, user + system).
#
# Needs: go, wrk, curl; perf for leads per fsync.
# Knobs (environment): DURATION=5s CONNS=64 THREADS=2 ROUNDS=3
#   PORT_BASE=18500 KEEP=1 (keep the work folder) NICE=-10 (priority, root)
#   ABLATE=nocapture|nostore|nosync: measure a build that skips a part of
#     capture (caddymodule/ablate_on.go; -tags leadproxy_ablate, never a
#     release build): nocapture reads no post, nostore does everything but
#     store the lead, nosync stores without fsync. The ratio against the
#     normal run is what that part costs.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18500}

log() { printf '[capture %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in go wrk curl awk; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y wrk curl)"
done
if [ -n "${NICE:-}" ]; then renice -n "$NICE" -p $$ >/dev/null || die "renice $NICE failed"; fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=${WORK:-$(mktemp -d /tmp/leadproxy-capture.XXXXXX)}
mkdir -p "$WORK"/{up,lp}/{data,config} "$WORK/leads"

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

UP=$PORT_BASE
CAPTURED=$((PORT_BASE + 1))
PLAIN=$((PORT_BASE + 2))
ADMIN=$((PORT_BASE + 3))
UP_ADMIN=$((PORT_BASE + 4))
for p in $UP $CAPTURED $PLAIN $ADMIN $UP_ADMIN; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set PORT_BASE)"; fi
done

TAGS=()
case "${ABLATE:-}" in
"") ;;
nocapture | nostore | nosync) TAGS=(-tags leadproxy_ablate) ;;
*) die "ABLATE=$ABLATE: want nocapture, nostore or nosync" ;;
esac
log "building leadproxy Caddy (./cmd/caddy${ABLATE:+, ablation $ABLATE})"
go build "${TAGS[@]}" -o "$WORK/caddy" ./cmd/caddy

cat >"$WORK/up/Caddyfile" <<EOF
{
	admin 127.0.0.1:$UP_ADMIN
}
http://127.0.0.1:$UP {
	respond "thanks" 200
}
EOF
cat >"$WORK/lp/Caddyfile" <<EOF
{
	admin 127.0.0.1:$ADMIN
	leadproxy {
		storage $WORK/leads
	}
}
http://127.0.0.1:$CAPTURED {
	leadproxy {
		form "Bench" {
			post    /lead
			require phone
		}
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$PLAIN {
	reverse_proxy 127.0.0.1:$UP
}
EOF

start() { # name; sets STARTED to the pid
	LEADPROXY_ABLATE="${ABLATE:-}" XDG_DATA_HOME="$WORK/$1/data" XDG_CONFIG_HOME="$WORK/$1/config" HOME="$WORK/$1" \
		"$WORK/caddy" run --config "$WORK/$1/Caddyfile" --adapter caddyfile >"$WORK/$1/log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}
start up
start lp
LP_PID=$STARTED
for i in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$ADMIN/leadproxy/stats" >/dev/null 2>&1 &&
		curl -fsS "http://127.0.0.1:$UP" >/dev/null 2>&1 && break
	[ "$i" = 100 ] && die "caddy did not start: $(tail -5 "$WORK/lp/log")"
	sleep 0.1
done

# Each request a unique phone (bench/post.lua): +79 followed by 9 digits
# made of the round, the wrk thread and a per-thread counter.
leads() { curl -fsS "http://127.0.0.1:$ADMIN/leadproxy/stats" | awk -F'[:,]' '/"leads"/ { gsub(/ /, "", $2); print $2; exit }'; }

# CPU time (user + system, clock ticks) the leadproxy Caddy has used.
HZ=$(getconf CLK_TCK)
lp_ticks() { awk '{ print $14 + $15 }' "/proc/$LP_PID/stat"; }

# run <port> <duration> <base>: prints "<requests/s> <requests> <non-2xx>
# <socket errors> <leadproxy Caddy CPU µs per request>"
run() {
	local out t0 t1
	t0=$(lp_ticks)
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$2" -s bench/post.lua "http://127.0.0.1:$1/lead" -- "$3")
	t1=$(lp_ticks)
	echo "$out" >>"$WORK/wrk.log"
	awk -v ticks=$((t1 - t0)) -v hz="$HZ" '/Requests\/sec/ { rps = $2 }
		/requests in/ { n = $1 }
		/Non-2xx/ { bad = $NF }
		/Socket errors/ { err = $0 }
		END { printf "%s %s %d %s %.0f\n", rps, n, bad, (err == "" ? "none" : "yes"), ticks * 1e6 / hz / n }' <<<"$out"
}

DUR_S=${DURATION%s}
base=0
next_base() { base=$((base + 10000000)); }
log "warm-up"
run $PLAIN 1s $base >/dev/null; next_base
run $CAPTURED 1s $base >/dev/null; next_base

sum_plain=0 sum_cap=0 sum_pus=0 sum_cus=0 sum_n=0 sum_leads=0 sum_syncs=0 perf_ok=1
leads0=$(leads)
for r in $(seq 1 "$ROUNDS"); do
	read -r p_rps _ p_bad p_err p_us < <(run $PLAIN "$DURATION" $base); next_base
	perf_out="$WORK/perf.$r"
	if command -v perf >/dev/null; then
		perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$LP_PID" -- sleep "$DUR_S" 2>"$perf_out" &
		PERF=$!
	fi
	read -r c_rps c_n c_bad c_err c_us < <(run $CAPTURED "$DURATION" $base); next_base
	syncs=-1
	if [ -n "${PERF:-}" ] && wait "$PERF"; then
		syncs=$(awk -F, '/syscalls:sys_enter_f/ { s += $1 } END { print s + 0 }' "$perf_out")
	fi
	[ "$p_bad" = 0 ] && [ "$c_bad" = 0 ] || die "non-2xx answers: plain $p_bad, captured $c_bad"
	[ "$p_err" = none ] && [ "$c_err" = none ] || die "socket errors (see $WORK/wrk.log; KEEP=1)"
	log "round $r: plain $p_rps req/s, captured $c_rps req/s, $c_n leads, $syncs fsyncs; leadproxy Caddy CPU per request: plain $p_us µs, captured $c_us µs"
	sum_pus=$((sum_pus + p_us)) sum_cus=$((sum_cus + c_us))
	sum_n=$((sum_n + c_n))
	sum_plain=$(awk -v a="$sum_plain" -v b="$p_rps" 'BEGIN { print a + b }')
	sum_cap=$(awk -v a="$sum_cap" -v b="$c_rps" 'BEGIN { print a + b }')
	if [ "$syncs" -gt 0 ]; then
		sum_leads=$((sum_leads + c_n)) sum_syncs=$((sum_syncs + syncs))
	else perf_ok=0; fi
done
leads1=$(leads)

plain=$(awk -v s="$sum_plain" -v n="$ROUNDS" 'BEGIN { printf "%.0f", s / n }')
cap=$(awk -v s="$sum_cap" -v n="$ROUNDS" 'BEGIN { printf "%.0f", s / n }')
ratio=$(awk -v a="$cap" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')
per_sync=n/a
if [ "$perf_ok" = 1 ] && [ "$sum_syncs" -gt 0 ]; then
	per_sync=$(awk -v a="$sum_leads" -v b="$sum_syncs" 'BEGIN { printf "%.1f", a / b }')
fi
echo "| plain reverse_proxy | captured (leadproxy) | ratio | leads per fsync | captured POSTs answered / leads stored | leadproxy Caddy CPU per request, plain / captured |"
echo "|---|---|---|---|---|---|"
echo "| $plain req/s | $cap req/s | $ratio× | $per_sync | $sum_n / $((leads1 - leads0)) | $((sum_pus / ROUNDS)) / $((sum_cus / ROUNDS)) µs |"
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, unique phone per POST;${ABLATE:+ ABLATION $ABLATE (not a release build);} load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
