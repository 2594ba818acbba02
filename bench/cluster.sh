#!/usr/bin/env bash
# bench/cluster.sh: cluster mode's cost (issue 17). Captured POSTs per
# second and deliveries per second with 1, 2 and 3 leadproxy nodes sharing
# one PostgreSQL, as ratios to one node without `cluster`, and the CPU per
# lead: each node's (capture + forwarding + the engine's deliveries) and
# PostgreSQL's. See "Cluster mode" in BENCHMARKS.md.
#
# Starts, on 127.0.0.1:
#   an upstream and a CRM: a second Caddy answering the site's POSTs with a
#     short 200 and the webhook deliveries with {"id": "..."},
#   PostgreSQL: initdb into the work folder, pg_ctl on PG_PORT (as the
#     postgres user when run as root),
#   then, per mode (base = one node without cluster; c1, c2, c3 = 1, 2, 3
#     nodes with `cluster`, each mode in a fresh schema), the nodes, each
#     with its own nutsdb folder and a `post /lead` rule delivered to one
#     webhook destination (rate 1000/1s: above what one
#     machine delivers, and a rate the slot table holds at 1000 rows),
# and POSTs urlencoded forms with unique phones for DURATION over CONNS
# connections spread over the nodes (one wrk per node). Deliveries per
# second: leads delivered from the start of the load until the fleet's
# queue (and every node's unforwarded count) is empty, over that time.
# Then page views: a GET of a small HTML page on node 1 for DURATION (the
# engine is off the request path, so cluster mode should not change it).
#
# All nodes share this machine's cores with PostgreSQL and wrk, so more
# nodes do not mean more capacity here: what the ratios show is what the
# cluster costs on the same hardware, not how a fleet scales.
#
# Needs: go, wrk, curl, jq, PostgreSQL 13+ (initdb, pg_ctl in PATH or
# /usr/lib/postgresql/*/bin).
# Knobs (environment): DURATION=5s CONNS=48 THREADS=1 (per wrk) NODES="1 2 3"
#   ROUNDS=1 (each round runs the base and every node count again, fresh
#   stores and schemas; with more than one, the median ratios are printed)
#   DRAIN_MAX=300 (seconds) PORT_BASE=18600 KEEP=1 (keep the work folder)
#   PGSS=1: load pg_stat_statements and log each cluster mode's top
#     statements by total time (also in <work>/<mode>/statements.txt)
#   PPROF=1: a CPU profile of node 1 over the load (<work>/<mode>/cpu.pprof;
#     go tool pprof -top <work>/caddy <work>/<mode>/cpu.pprof)
# The drain, not the load, takes most of the time: a smoke run is
# DURATION=1s CONNS=8 NODES=1.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-48}
THREADS=${THREADS:-1}
NODES=${NODES:-1 2 3}
ROUNDS=${ROUNDS:-1}
ROUND=0
DRAIN_MAX=${DRAIN_MAX:-300}
PORT_BASE=${PORT_BASE:-18600}
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

for tool in go wrk curl jq awk; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y wrk curl jq)"
done
PGBIN=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL (apt-get install -y postgresql)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=${WORK:-$(mktemp -d /tmp/leadproxy-cluster.XXXXXX)}
mkdir -p "$WORK"/up/{data,config}

PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -d "$WORK/pg" ] && as_pg "$PGBIN/pg_ctl" stop -D "$WORK/pg" -m immediate >/dev/null 2>&1 || true
	if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

UP=$PORT_BASE
UP_ADMIN=$((PORT_BASE + 1))
PG_PORT=$((PORT_BASE + 2))
# Node i (1..3) listens on PORT_BASE+10*i (site) and +1 (admin).
for p in $UP $UP_ADMIN $PG_PORT $((PORT_BASE + 10)) $((PORT_BASE + 11)) $((PORT_BASE + 20)) $((PORT_BASE + 21)) $((PORT_BASE + 30)) $((PORT_BASE + 31)); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set PORT_BASE)"; fi
done

log "building leadproxy Caddy (./cmd/caddy)"
go build -o "$WORK/caddy" ./cmd/caddy

log "starting PostgreSQL ($PGBIN) on port $PG_PORT"
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK" "$WORK/pg"
chmod 755 "$WORK"
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust --no-sync >"$WORK/initdb.log" 2>&1 || die "initdb: $(tail -3 "$WORK/initdb.log")"
PGOPTS=""
[ -n "${PGSS:-}" ] && PGOPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
as_pg "$PGBIN/pg_ctl" start -D "$WORK/pg" -w -l "$WORK/pg/log" \
	-o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200 $PGOPTS" >/dev/null || die "pg_ctl start: $(tail -3 "$WORK/pg/log")"
PG_PID=$(head -1 "$WORK/pg/postmaster.pid")
DSN="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
psql_() { as_pg "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }

cat >"$WORK/up/Caddyfile" <<EOF
{
	admin 127.0.0.1:$UP_ADMIN
}
http://127.0.0.1:$UP {
	handle /hook {
		header Content-Type application/json
		respond "{\"id\": \"deal-1\"}" 200
	}
	handle /page.html {
		header Content-Type "text/html; charset=utf-8"
		respond "<!DOCTYPE html><html lang=ru><head><meta charset=utf-8><title>Окна</title></head><body><form id=f method=post action=/lead><input name=phone></form></body></html>" 200
	}
	respond "thanks" 200
}
EOF

start() { # dir; sets STARTED to the pid
	XDG_DATA_HOME="$1/data" XDG_CONFIG_HOME="$1/config" HOME="$1" \
		"$WORK/caddy" run --config "$1/Caddyfile" --adapter caddyfile >"$1/log" 2>&1 &
	STARTED=$!
	PIDS+=("$STARTED")
}
wait_up() { # url
	local i
	for i in $(seq 1 200); do
		curl -fsS "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
start "$WORK/up"
wait_up "http://127.0.0.1:$UP" || die "upstream did not start: $(tail -5 "$WORK/up/log")"

# node_config <dir> <i> <schema or empty>
node_config() {
	local cluster=""
	[ -n "$3" ] && cluster="cluster $DSN {
			node   bench-$2
			schema $3
		}"
	cat >"$1/Caddyfile" <<EOF
{
	admin 127.0.0.1:$((PORT_BASE + 10 * $2 + 1))
	leadproxy {
		storage $1/leads
		leads_per_client off
		leads_per_site off
		$cluster
		destination hook webhook {
			url    http://127.0.0.1:$UP/hook
			secret $SECRET
			rate   1000/1s
		}
	}
}
http://127.0.0.1:$((PORT_BASE + 10 * $2)) {
	leadproxy {
		form "Bench" {
			post    /lead
			require phone
		}
	}
	reverse_proxy 127.0.0.1:$UP
}
EOF
}


HZ=$(getconf CLK_TCK)
ticks() { # pids...: user + system clock ticks
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done
	echo "$t"
}
pg_ticks() { # the postmaster and its children (backends, walwriter, ...)
	# shellcheck disable=SC2046
	ticks "$PG_PID" $(ps -o pid= --ppid "$PG_PID")
}
# Transactions committed and rows read in the whole server (statistics
# are flushed within a second; the figure is per lead over a mode).
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -1 || true)
[ -x "$PGBIN/psql" ] && PSQL=$PGBIN/psql
[ -n "$PSQL" ] || die "no psql"
pg_xacts() { as_pg "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc \
	"SELECT sum(xact_commit), sum(tup_returned + tup_fetched), sum(sessions) FROM pg_stat_database" | tr '|' ' '; }
stats() { curl -fsS "http://127.0.0.1:$((PORT_BASE + 11))/leadproxy/stats"; }
delivered() { stats | jq '.by_status.delivered // 0'; }
busy() { # the fleet's queue, plus every node's unforwarded
	local n=$1 i s=0
	for i in $(seq 1 "$n"); do
		s=$((s + $(curl -fsS "http://127.0.0.1:$((PORT_BASE + 10 * i + 1))/leadproxy/stats" | jq '.queue_depth + (.cluster.unforwarded // 0)')))
	done
	echo "$s"
}

# mode <name> <nodes> <schema or empty>: prints "<POSTs/s> <deliveries/s>
# <leads> <node CPU µs/lead> <PostgreSQL CPU µs/lead> <PostgreSQL
# transactions/lead> <rows read/lead>"
mode() {
	local name=$1 n=$2 schema=$3 i pids=() urls=() t0 t1 pg0 pg1 start_ns end_ns
	# mode runs in a subshell (read < <(mode ...)): its nodes are not in
	# PIDS, so it stops them itself, also when it fails.
	trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
	for i in $(seq 1 "$n"); do
		local d="$WORK/$name/n$i"
		mkdir -p "$d"/{data,config}
		node_config "$d" "$i" "$schema"
		start "$d"
		pids+=("$STARTED")
		urls+=("http://127.0.0.1:$((PORT_BASE + 10 * i))/lead")
	done
	for i in $(seq 1 "$n"); do
		wait_up "http://127.0.0.1:$((PORT_BASE + 10 * i + 1))/leadproxy/stats" || die "$name node $i did not start: $(tail -5 "$WORK/$name/n$i/log")"
	done
	[ -n "$schema" ] && for i in $(seq 1 100); do # migrated and registered
		[ "$(stats | jq '.cluster.engine.up')" = true ] && break
		[ "$i" = 100 ] && die "$name: the cluster engine did not come up: $(tail -5 "$WORK/$name/n1/log")"
		sleep 0.1
	done
	local per=$((CONNS / n))
	[ "$per" -ge 1 ] || per=1
	[ -n "$schema" ] && [ -n "${PGSS:-}" ] && psql_ -qAtc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null
	local prof=""
	if [ -n "${PPROF:-}" ]; then
		curl -fsS -o "$WORK/$name/cpu.pprof" "http://127.0.0.1:$((PORT_BASE + 11))/debug/pprof/profile?seconds=${DURATION%s}" &
		prof=$!
	fi
	t0=$(ticks "${pids[@]}") pg0=$(pg_ticks)
	local x0 r0 x1 r1 s0 s1
	read -r x0 r0 s0 < <(pg_xacts)
	start_ns=$(date +%s%N)
	local outs=() wrks=() w
	for i in $(seq 1 "$n"); do
		outs+=("$WORK/$name/wrk.$i")
		wrk -t"$THREADS" -c"$per" -d"$DURATION" -s bench/post.lua "${urls[$((i - 1))]}" -- $((i * 100000000 + ROUND * 10000000)) >"$WORK/$name/wrk.$i" &
		wrks+=($!)
	done
	for w in "${wrks[@]}"; do wait "$w" || die "$name: wrk failed"; done
	local rps=0 reqs=0 bad=0
	for f in "${outs[@]}"; do
		read -r r q b < <(awk '/Requests\/sec/ { rps = $2 } /requests in/ { n = $1 } /Non-2xx/ { bad = $NF } END { print rps + 0, n + 0, bad + 0 }' "$f")
		rps=$(awk -v a="$rps" -v b="$r" 'BEGIN { print a + b }')
		reqs=$((reqs + q)) bad=$((bad + b))
	done
	[ "$bad" = 0 ] || die "$name: $bad non-2xx answers (see $WORK/$name/wrk.*; KEEP=1)"
	[ -n "$prof" ] && { wait "$prof" || log "$name: the CPU profile failed"; }
	# Polled twice a second: in cluster mode each poll is a query on the
	# fleet's tables, which costs PostgreSQL CPU counted below.
	local deadline=$(($(date +%s) + DRAIN_MAX))
	until [ "$(busy "$n")" = 0 ]; do
		[ "$(date +%s)" -lt "$deadline" ] || die "$name: deliveries did not drain in $DRAIN_MAX s"
		sleep 0.5
	done
	end_ns=$(date +%s%N)
	t1=$(ticks "${pids[@]}") pg1=$(pg_ticks)
	sleep 1 # the server's statistics flush
	read -r x1 r1 s1 < <(pg_xacts)
	log "$name: $((s1 - s0)) PostgreSQL sessions opened"
	[ -n "$schema" ] && log "$name: tables read most (table seq_scans seq_rows idx_scans idx_rows): $(as_pg "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc \
		"SELECT string_agg(format('%s %s %s %s %s', relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch), '; ') FROM (SELECT * FROM pg_stat_user_tables WHERE schemaname = '$schema' ORDER BY seq_tup_read + coalesce(idx_tup_fetch, 0) DESC LIMIT 4) t")"
	if [ -n "$schema" ] && [ -n "${PGSS:-}" ]; then
		psql_ -Atc "SELECT format('%s ms %s calls %s rows %s blks | %s', round(total_exec_time), calls, rows, shared_blks_hit + shared_blks_read,
			left(regexp_replace(query, '\s+', ' ', 'g'), 160)) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15" >"$WORK/$name/statements.txt"
		log "$name: top statements by total time (ms, calls, rows, shared blocks):"
		sed 's/^/    /' "$WORK/$name/statements.txt" >&2
	fi
	local got
	got=$(delivered)
	[ "$got" -ge "$reqs" ] || die "$name: $reqs POSTs answered, $got delivered"
	# Page views on node 1, the queue drained: what cluster mode costs a
	# visitor's GET (nothing, if the engine is off the request path).
	local v0 v1 vout vrps vn
	v0=$(ticks "${pids[@]}")
	vout=$(wrk -t1 -c8 -d"$DURATION" -H "Accept: text/html" "http://127.0.0.1:$((PORT_BASE + 10))/page.html")
	v1=$(ticks "${pids[@]}")
	read -r vrps vn < <(awk '/Requests\/sec/ { r = $2 } /requests in/ { n = $1 } END { print r + 0, n + 0 }' <<<"$vout")
	grep -q "Non-2xx" <<<"$vout" && die "$name: non-2xx answers to page views"
	for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	awk -v rps="$rps" -v n="$reqs" -v ns=$((end_ns - start_ns)) -v t=$((t1 - t0)) -v pg=$((pg1 - pg0)) -v hz="$HZ" \
		-v x=$((x1 - x0)) -v rows=$((r1 - r0)) -v vrps="$vrps" -v vn="$vn" -v vt=$((v1 - v0)) \
		'BEGIN { printf "%.0f %.0f %d %.0f %.0f %.1f %.0f %.0f %.0f\n", rps, n / (ns / 1e9), n, t * 1e6 / hz / n, pg * 1e6 / hz / n, x / n, rows / n, vrps, (vn > 0 ? vt * 1e6 / hz / vn : 0) }'
}

rows=()
: >"$WORK/ratios"
for r in $(seq "$ROUNDS"); do
	ROUND=$r sfx="" label=""
	[ "$ROUNDS" = 1 ] || sfx="_r$r" label=" (round $r)"
	log "mode base$sfx: 1 node without cluster"
	read -r b_rps b_dps b_n b_cpu _ _ _ b_vrps b_vcpu < <(mode "base$sfx" 1 "")
	log "base$sfx: $b_rps POSTs/s, $b_dps deliveries/s, $b_n leads, node CPU $b_cpu µs/lead"
	rows+=("| 1, no cluster$label | $b_rps | $b_dps | $b_cpu | - | - | $b_vrps, $b_vcpu µs |")
	for n in $NODES; do
		log "mode c$n$sfx: $n node(s) with cluster"
		read -r rps dps cnt cpu pgcpu xpl rpl vrps vcpu < <(mode "c$n$sfx" "$n" "bench_c$n$sfx")
		log "c$n$sfx: $rps POSTs/s, $dps deliveries/s, $cnt leads, nodes' CPU $cpu µs/lead, PostgreSQL $pgcpu µs/lead, $xpl transactions and $rpl rows read per lead"
		rows+=("| $n$label | $rps ($(awk -v a="$rps" -v b="$b_rps" 'BEGIN { printf "%.2f", a / b }')×) | $dps ($(awk -v a="$dps" -v b="$b_dps" 'BEGIN { printf "%.2f", a / b }')×) | $cpu (+$((cpu - b_cpu))) | $pgcpu | $xpl / $rpl | $vrps ($(awk -v a="$vrps" -v b="$b_vrps" 'BEGIN { printf "%.2f", a / b }')×), $vcpu µs |")
		echo "$n $(awk -v a="$rps" -v b="$b_rps" 'BEGIN { print a / b }') $(awk -v a="$vrps" -v b="$b_vrps" 'BEGIN { print a / b }') $(awk -v a="$vcpu" -v b="$b_vcpu" 'BEGIN { print (b > 0 ? a / b : 0) }')" >>"$WORK/ratios"
	done
done
echo "| nodes | captured POSTs/s (× one node without cluster) | deliveries/s (×) | nodes' CPU µs per lead (+ over without cluster) | PostgreSQL CPU µs per lead | PostgreSQL transactions / rows read per lead | page views/s on node 1 (×), nodes' CPU per view |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "$ROUNDS" -gt 1 ]; then
	echo
	for n in $NODES; do
		awk -v n="$n" '$1 == n { c[++k] = $2; v[k] = $3; u[k] = $4 }
			function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
			END { printf "%d node(s), median of %d rounds (each against its own round'"'"'s base): capture %.2f×, page views %.2f×, CPU per page view %.2f×\n", n, k, med(c, k), med(v, k), med(u, k) }' "$WORK/ratios"
	done
fi
echo
echo "wrk -t$THREADS, $CONNS connections over the nodes, $DURATION per mode, unique phone per POST, one webhook destination at 1000/1s; page views: wrk -t1 -c8 -d$DURATION GET of a small HTML page (injected) on node 1 once the queue drained; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
