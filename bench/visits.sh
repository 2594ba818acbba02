#!/usr/bin/env bash
# bench/visits.sh: what the proxy's own visit recording (issue 18) costs on
# the page path: page views with `visits on` against `visits off`, in
# alternating rounds, with wrk as the client. See "Visits" in BENCHMARKS.md.
#
# Starts, on 127.0.0.1:
#   an upstream: a second Caddy serving the WordPress-shaped page of
#     bench/wppage.awk (117 KB, 71 KB head),
#   the leadproxy Caddy (./cmd/caddy) with two sites on the same upstream,
#     both injecting the capture script: on (visits on, the default) and
#     off (visits off),
# then measures two kinds of traffic, each on both sites, ROUNDS rounds:
#   known: navigations that carry a roistat_visit cookie (every page view
#     of a visitor but the first): the cost is reading the Cookie header and
#     one lookup; nothing is written;
#   new:   navigations without the cookie (every one a first page view): a
#     visit built and held in memory, a Set-Cookie added; the worst case
#     (past 20000 waiting visits new ones are dropped, counted, as a flood
#     of cookieless clients would be).
# Prints req/s and the leadproxy Caddy's CPU time per request (/proc, user
# + system) for each, and the ratio on/off against the target (>= 0.98x).
#
# Needs: go, wrk, curl.
# Knobs (environment): DURATION=5s CONNS=32 THREADS=2 ROUNDS=3
#   PORT_BASE=18600 KEEP=1 (keep the work folder) NICE=-10 (priority, root)
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18600}
HTML_ACCEPT='text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'

log() { printf '[visits %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in go wrk curl awk; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y wrk curl)"
done
if [ -n "${NICE:-}" ]; then renice -n "$NICE" -p $$ >/dev/null || die "renice $NICE failed"; fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=${WORK:-$(mktemp -d /tmp/leadproxy-visits.XXXXXX)}
mkdir -p "$WORK"/{up,lp}/{data,config} "$WORK/leads" "$WORK/www"

PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

UP=$PORT_BASE
ON=$((PORT_BASE + 1))
OFF=$((PORT_BASE + 2))
ADMIN=$((PORT_BASE + 3))
UP_ADMIN=$((PORT_BASE + 4))
for p in $UP $ON $OFF $ADMIN $UP_ADMIN; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set PORT_BASE)"; fi
done

log "building leadproxy Caddy (./cmd/caddy)"
go build -o "$WORK/caddy" ./cmd/caddy
LC_ALL=C awk -v nonce=0 -f bench/wppage.awk >"$WORK/www/index.html"

cat >"$WORK/up/Caddyfile" <<EOF
{
	admin 127.0.0.1:$UP_ADMIN
}
http://127.0.0.1:$UP {
	root * $WORK/www
	file_server
}
EOF
cat >"$WORK/lp/Caddyfile" <<EOF
{
	admin 127.0.0.1:$ADMIN
	leadproxy {
		storage $WORK/leads
	}
}
http://127.0.0.1:$ON {
	leadproxy {
		visits on
	}
	reverse_proxy 127.0.0.1:$UP
}
http://127.0.0.1:$OFF {
	leadproxy {
		visits off
	}
	reverse_proxy 127.0.0.1:$UP
}
EOF

start() { # name; sets STARTED to the pid
	XDG_DATA_HOME="$WORK/$1/data" XDG_CONFIG_HOME="$WORK/$1/config" HOME="$WORK/$1" \
		"$WORK/caddy" run --config "$WORK/$1/Caddyfile" --adapter caddyfile >"$WORK/$1/log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}
start up
start lp
LP_PID=$STARTED
for i in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$ADMIN/leadproxy/stats" >/dev/null 2>&1 &&
		curl -fsS "http://127.0.0.1:$UP/" >/dev/null 2>&1 && break
	[ "$i" = 100 ] && die "caddy did not start: $(tail -5 "$WORK/lp/log")"
	sleep 0.1
done

# Checks: the on site sets the cookie on a first view and not on a known
# one; the off site never does; both inject the tag.
nav() { curl -fsS -D - -o "$WORK/page" -H "Accept: $HTML_ACCEPT" -H "Sec-Fetch-Mode: navigate" -H "Sec-Fetch-Dest: document" -A "$UA" "$@"; }
VISIT=$(nav "http://127.0.0.1:$ON/" | awk -F'[=;]' 'tolower($1) ~ /^set-cookie: roistat_visit/ { print $2 }')
[ -n "$VISIT" ] || die "the on site set no roistat_visit cookie"
grep -q '/_leadproxy/c.js' "$WORK/page" || die "the on site did not inject the tag"
nav -H "Cookie: roistat_visit=$VISIT" "http://127.0.0.1:$ON/" | grep -qi '^set-cookie: roistat_visit' && die "a known visit got a cookie again"
nav "http://127.0.0.1:$OFF/" | grep -qi '^set-cookie: roistat_visit' && die "the off site set a visit cookie"
grep -q '/_leadproxy/c.js' "$WORK/page" || die "the off site did not inject the tag"

HZ=$(getconf CLK_TCK)
lp_ticks() { awk '{ print $14 + $15 }' "/proc/$LP_PID/stat"; }

# run <port> <duration> [cookie]: prints "<requests/s> <non-2xx>
# <socket errors> <leadproxy Caddy CPU µs per request>"
run() {
	local out t0 t1 hdr=()
	[ -n "${3:-}" ] && hdr=(-H "Cookie: roistat_visit=$3")
	t0=$(lp_ticks)
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$2" -H "Accept: $HTML_ACCEPT" -H "Sec-Fetch-Mode: navigate" -H "Sec-Fetch-Dest: document" \
		-H "User-Agent: $UA" "${hdr[@]}" "http://127.0.0.1:$1/")
	t1=$(lp_ticks)
	echo "$out" >>"$WORK/wrk.log"
	awk -v ticks=$((t1 - t0)) -v hz="$HZ" '/Requests\/sec/ { rps = $2 }
		/requests in/ { n = $1 }
		/Non-2xx/ { bad = $NF }
		/Socket errors/ { err = $0 }
		END { printf "%s %d %s %.1f\n", rps, bad, (err == "" ? "none" : "yes"), ticks * 1e6 / hz / n }' <<<"$out"
}

log "warm-up"
run $OFF 1s >/dev/null
run $ON 1s "$VISIT" >/dev/null

echo "| traffic | visits off | visits on | ratio (target ≥ 0.98×) | CPU per request, off / on |"
echo "|---|---|---|---|---|"
for kind in known new; do
	cookie=""
	[ "$kind" = known ] && cookie=$VISIT
	s_off=0 s_on=0 c_off=0 c_on=0
	for r in $(seq 1 "$ROUNDS"); do
		read -r off_rps off_bad off_err off_us < <(run $OFF "$DURATION" "$cookie")
		read -r on_rps on_bad on_err on_us < <(run $ON "$DURATION" "$cookie")
		[ "$off_bad" = 0 ] && [ "$on_bad" = 0 ] || die "non-2xx answers: off $off_bad, on $on_bad"
		[ "$off_err" = none ] && [ "$on_err" = none ] || die "socket errors (see $WORK/wrk.log; KEEP=1)"
		log "$kind round $r: off $off_rps req/s ($off_us µs CPU), on $on_rps req/s ($on_us µs CPU)"
		s_off=$(awk -v a="$s_off" -v b="$off_rps" 'BEGIN { print a + b }')
		s_on=$(awk -v a="$s_on" -v b="$on_rps" 'BEGIN { print a + b }')
		c_off=$(awk -v a="$c_off" -v b="$off_us" 'BEGIN { print a + b }')
		c_on=$(awk -v a="$c_on" -v b="$on_us" 'BEGIN { print a + b }')
	done
	awk -v k="$kind" -v off="$s_off" -v on="$s_on" -v coff="$c_off" -v con="$c_on" -v n="$ROUNDS" 'BEGIN {
		r = on / off
		printf "| %s | %.0f req/s | %.0f req/s | %.3f× %s | %.0f / %.0f µs |\n", k, off / n, on / n, r, (r >= 0.98 ? "ok" : "BELOW"), coff / n, con / n }'
done
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, WordPress-shaped page ($(stat -c %s "$WORK/www/index.html") B); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
