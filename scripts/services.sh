#!/usr/bin/env bash
# scripts/services.sh — a private PostgreSQL 15 and a private ClickHouse for
# tests and `make run`, as plain background processes (no systemd, no Docker).
#
# Usage:
#   scripts/services.sh up                 start both (idempotent), print env
#   scripts/services.sh env                print export lines: eval "$(scripts/services.sh env)"
#   scripts/services.sh status             show what is running (exit 1 unless both are)
#   scripts/services.sh down [--purge]     stop both; --purge also deletes the state dir
#   scripts/services.sh stop-postgres | start-postgres | stop-clickhouse | start-clickhouse
#                                          stop or restart one server, keeping data and port
#   scripts/services.sh psql [args]        psql against the private PostgreSQL (db relay)
#   scripts/services.sh ch [args]          clickhouse-client against the private ClickHouse (db relay)
#   scripts/services.sh browser            install chromium when missing (the status page's browser
#                                          test), print its env: RELAY_CHROMIUM
#   scripts/services.sh chdb               fetch chDB's libchdb.so (ClickHouse 26.5 as a library, npm
#                                          package, cached in ~/.cache/outbox-relay) once, print its
#                                          env: RELAY_CHDB_LIB (the TestConformance… tests)
#   scripts/services.sh django             install Debian's Django and psycopg2 when no python3 has
#                                          them, print its env: RELAY_DJANGO_PYTHON (the test of
#                                          docs/django/models.py)
#
# The ClickHouse cluster (for the replicated and sharded topologies; `up`,
# `make run` and the single-server tests never need it): ZooKeeper and four
# clickhouse-server processes, 2 shards x 2 replicas, cluster `relay_cluster`.
#   scripts/services.sh cluster-up         start it (idempotent), print its env
#   scripts/services.sh cluster-env        print its export lines
#   scripts/services.sh cluster-status     show what is running (exit 1 unless all are)
#   scripts/services.sh cluster-down       stop it (`down` stops it too; --purge removes it)
#   scripts/services.sh stop-replica N [--kill] | start-replica N
#                                          N = 1..4 is shard (N+1)/2, replica 2-N%2
#   scripts/services.sh stop-zookeeper [--kill] | start-zookeeper
#   scripts/services.sh cluster-ch N [args]  clickhouse-client against replica N (db relay)
#
# PostgreSQL 17, beside 15 (Debian 13's postgresql-17, run chrooted from a
# trixie folder that debootstrap makes once: $RELAY_TRIXIE_DIR, default
# ~/.cache/outbox-relay/trixie; making it needs root):
#   scripts/services.sh pg17-up            start it (idempotent), print DATABASE_URL_PG17
#   scripts/services.sh pg17-env | pg17-status
#   scripts/services.sh pg17-pair-up       a failover pair: primary pg17a and physical
#                                          standby pg17b with slot synchronization, print
#                                          DATABASE_URL_PG17_PRIMARY / _STANDBY
#   scripts/services.sh pg17-pair-down [--purge]  stop the pair; --purge deletes its data
#   scripts/services.sh stop-pg17 NAME [--kill] | start-pg17 NAME
#                                          NAME = pg17, pg17a or pg17b
#   scripts/services.sh pg17-psql NAME [args]  psql against instance NAME (db relay)
#
# A PostgreSQL 15 failover pair (Debian's postgresql-15, as the shared server):
#   scripts/services.sh pg15-pair-up       primary pg15a and physical standby pg15b
#                                          (synchronous), print DATABASE_URL_PG15_PRIMARY
#                                          / _STANDBY
#   scripts/services.sh pg15-pair-down [--purge]  stop the pair; --purge deletes its data
#   scripts/services.sh stop-pg15 NAME [--kill]   NAME = pg15a or pg15b
#   scripts/services.sh pg15-psql NAME [args]     psql against instance NAME (db relay)
#
# State dir: $RELAY_SERVICES_DIR if set, else <repo>/.services.
# Progress goes to stderr; only the env lines go to stdout.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PG_PACKAGE=postgresql-15
CH_SERVER=clickhouse-server
CH_CLIENT=clickhouse-client
READY_TIMEOUT=${RELAY_SERVICES_TIMEOUT:-60}
MARKER=.relay-services

DIR=${RELAY_SERVICES_DIR:-$REPO_ROOT/.services}
case $DIR in
/*) ;;
*) DIR=$PWD/$DIR ;;
esac
DIR=${DIR%/}
[[ -n $DIR ]] || { echo "services: refusing to use / as the state dir" >&2; exit 2; }

PGDIR=$DIR/pg
PGDATA_DIR=$PGDIR/data
PGLOG=$PGDIR/log/postgresql.log
CHDIR=$DIR/ch
CHPID=$DIR/clickhouse.pid
CHLOG=$CHDIR/log/clickhouse-server.log
CHERRLOG=$CHDIR/log/clickhouse-server.err.log
CHOUT=$CHDIR/log/stdout.log
PORTS=$DIR/ports
ENVFILE=$DIR/env

PG_PORT='' CH_TCP_PORT='' CH_HTTP_PORT='' PG_SOCKDIR=''
# The ClickHouse functions below act on the server these name; the cluster
# code rebinds them (as locals) to each of its replicas.
CH_NAME=clickhouse
CH_EXTRA_CONF=''

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { ((EUID == 0)); }

# ---------------------------------------------------------------- packages

# find_bin NAME prints the absolute path of NAME, also looking in the sbin
# directories, which are not on a non-root user's PATH on Debian.
find_bin() {
	local d p
	if p=$(command -v "$1" 2>/dev/null) && [[ $p == /* ]]; then
		echo "$p"
		return 0
	fi
	for d in /usr/sbin /usr/bin /sbin /bin /usr/local/bin /usr/local/sbin; do
		[[ -x $d/$1 ]] && { echo "$d/$1"; return 0; }
	done
	return 1
}

# resolve_ch turns CH_SERVER and CH_CLIENT into absolute paths.
resolve_ch() {
	local p rc=0
	if p=$(find_bin "$CH_SERVER"); then CH_SERVER=$p; else rc=1; fi
	if p=$(find_bin "$CH_CLIENT"); then CH_CLIENT=$p; else rc=1; fi
	return "$rc"
}

# apt_install PKG... installs the packages when we are root, else says how.
apt_install() {
	local -a missing
	mapfile -t missing < <(printf '%s\n' "$@" | sort -u)
	if ! is_root; then
		log "missing packages: ${missing[*]}"
		log "install them with: sudo apt-get install -y ${missing[*]}"
		exit 1
	fi
	log "installing ${missing[*]} (apt-get)..."
	local aptlog
	aptlog=$(mktemp)
	if ! { apt-get update -q &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1; then
		tail -n 30 "$aptlog" >&2
		rm -f "$aptlog"
		die "apt-get install ${missing[*]} failed"
	fi
	rm -f "$aptlog"
	hash -r
}

ensure_packages() {
	local missing=()
	[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/postgres && -x $PG_BIN/psql ]] || missing+=("$PG_PACKAGE")
	resolve_ch || true
	[[ -x $CH_SERVER ]] || missing+=(clickhouse-server)
	[[ -x $CH_CLIENT ]] || missing+=(clickhouse-client)
	command -v flock >/dev/null 2>&1 || missing+=(util-linux)
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	if is_root && ! command -v setpriv >/dev/null 2>&1 && ! command -v runuser >/dev/null 2>&1; then
		missing+=(util-linux)
	fi
	if ((${#missing[@]} > 0)); then
		apt_install "${missing[@]}"
		resolve_ch || die "clickhouse-server/clickhouse-client still missing after apt-get install"
	fi
	if is_root; then
		id -u postgres >/dev/null 2>&1 || die "system user 'postgres' is missing (it comes with the $PG_PACKAGE package)"
	fi
}

# ---------------------------------------------------------------- helpers

# as_pg runs a PostgreSQL server tool: as the 'postgres' system user when we
# are root (initdb and pg_ctl refuse to run as root), else as ourselves. The
# environment is cleared so that the caller's PG* variables cannot interfere.
as_pg() {
	local envv=(env -i PATH=/usr/local/bin:/usr/bin:/bin LC_ALL=C)
	if is_root; then
		if command -v setpriv >/dev/null 2>&1; then
			setpriv --reuid=postgres --regid=postgres --init-groups \
				"${envv[@]}" HOME=/var/lib/postgresql USER=postgres "$@"
		else
			runuser -u postgres -- "${envv[@]}" HOME=/var/lib/postgresql USER=postgres "$@"
		fi
	else
		"${envv[@]}" HOME="${HOME:-/tmp}" USER="$(id -un)" "$@"
	fi
}

# make_traversable makes every directory from / down to $1 searchable by the
# postgres user (mktemp dirs are 0700, /root is 0700).
make_traversable() {
	is_root || return 0
	local path=$1 p='' part
	local -a parts
	IFS=/ read -r -a parts <<<"${path#/}"
	for part in "${parts[@]}"; do
		[[ -n $part ]] || continue
		p=$p/$part
		if ! as_pg test -x "$p" 2>/dev/null; then
			log "chmod o+x $p (so that the postgres user can reach $path)"
			chmod o+x "$p"
		fi
	done
}

port_in_use() {
	local port=$1
	# Anything accepting connections on loopback?
	if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
		return 0
	fi
	# Anything listening on that port on any address (when ss is available)?
	if command -v ss >/dev/null 2>&1; then
		if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			return 0
		fi
	fi
	return 1
}

# pick_port prints a free TCP port in 20000-32767 (below Linux's ephemeral
# range), different from the ports given as arguments.
pick_port() {
	local port i x taken
	for ((i = 0; i < 200; i++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
		taken=0
		for x in "$@"; do
			[[ $x == "$port" ]] && taken=1
		done
		((taken)) && continue
		port_in_use "$port" && continue
		echo "$port"
		return 0
	done
	die "could not find a free TCP port"
}

load_ports() {
	[[ -f $PORTS ]] || return 1
	# shellcheck disable=SC1090
	source "$PORTS"
	[[ -n $PG_PORT && -n $CH_TCP_PORT && -n $CH_HTTP_PORT ]]
}

save_ports() {
	{
		echo "PG_PORT=$PG_PORT"
		echo "CH_TCP_PORT=$CH_TCP_PORT"
		echo "CH_HTTP_PORT=$CH_HTTP_PORT"
		printf 'PG_SOCKDIR=%q\n' "$PG_SOCKDIR"
	} >"$PORTS.tmp"
	mv -f "$PORTS.tmp" "$PORTS"
}

# emit NAME VALUE prints a shell export line with VALUE single-quoted.
emit() { printf "export %s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; }

print_env() {
	emit RELAY_SERVICES_DIR "$DIR"
	emit PG_BIN "$PG_BIN"
	emit PGPORT_RELAY "$PG_PORT"
	emit DATABASE_URL "postgres://postgres@127.0.0.1:$PG_PORT/relay?sslmode=disable"
	emit CLICKHOUSE_URL "clickhouse://default:@127.0.0.1:$CH_TCP_PORT/relay"
	emit CLICKHOUSE_TCP_PORT "$CH_TCP_PORT"
	emit CLICKHOUSE_HTTP_PORT "$CH_HTTP_PORT"
}

write_env() {
	print_env >"$ENVFILE.tmp"
	mv -f "$ENVFILE.tmp" "$ENVFILE"
}

lock_state() {
	mkdir -p "$DIR"
	touch "$DIR/$MARKER"
	exec 9>"$DIR/.lock"
	if ! flock -w 300 9; then
		die "timed out waiting for the lock on $DIR (another services.sh running?)"
	fi
}

# ---------------------------------------------------------------- PostgreSQL

# proc_alive PID [COMM] succeeds if PID exists, is not a zombie and (if COMM
# is given) its process name starts with COMM.
proc_alive() {
	local stat='' comm rest
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	comm=${stat#*(}
	comm=${comm%)*}
	rest=${stat##*) }
	[[ ${rest:0:1} != [ZX] ]] || return 1
	[[ -z ${2:-} || $comm == "$2"* ]]
}

# alive_pid PIDFILE COMM prints the pid recorded (first line) in PIDFILE if
# that process is alive and its name starts with COMM.
alive_pid() {
	local pid=''
	[[ -r $1 ]] || return 1
	{ read -r pid || [[ -n $pid ]]; } 2>/dev/null <"$1" || return 1
	proc_alive "$pid" "$2" || return 1
	echo "$pid"
}

pg_pid() { alive_pid "$PGDATA_DIR/postmaster.pid" postgres; }

pg_running() { alive_pid "$PGDATA_DIR/postmaster.pid" postgres >/dev/null; }

pg_init() {
	[[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
	log "initdb $PGDATA_DIR"
	rm -rf "$PGDATA_DIR"
	mkdir -p "$PGDIR" "$PGDIR/log"
	if is_root; then
		chown postgres: "$PGDIR" "$PGDIR/log"
		chmod 0700 "$PGDIR"
	fi
	make_traversable "$DIR"
	local out
	if ! out=$(cd "$PGDIR" && as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres \
		--auth=trust --encoding=UTF8 --locale=C --no-sync 2>&1 9>&-); then
		printf '%s\n' "$out" >&2
		die "initdb failed"
	fi
	cat >"$PGDATA_DIR/pg_hba.conf" <<-'EOF'
		# TYPE  DATABASE     USER  ADDRESS        METHOD
		local   all          all                  trust
		local   replication  all                  trust
		host    all          all   127.0.0.1/32   trust
		host    replication  all   127.0.0.1/32   trust
		host    all          all   ::1/128        trust
		host    replication  all   ::1/128        trust
	EOF
	echo "include_if_exists = 'relay.conf'" >>"$PGDATA_DIR/postgresql.conf"
	# A throwaway certificate: the server also takes TLS (sslmode=require),
	# which the tests of the relay over TLS use; plain connections still work.
	# Its names (SAN) let sslmode=verify-full, with server.crt as the root,
	# check it by either name the tests use.
	if ! out=$(openssl req -new -x509 -days 3650 -nodes -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
		-keyout "$PGDATA_DIR/server.key" -out "$PGDATA_DIR/server.crt" 2>&1); then
		printf '%s\n' "$out" >&2
		die "openssl could not make the server's certificate"
	fi
	chmod 0600 "$PGDATA_DIR/server.key"
	is_root && chown postgres: "$PGDATA_DIR/pg_hba.conf" "$PGDATA_DIR/postgresql.conf" \
		"$PGDATA_DIR/server.key" "$PGDATA_DIR/server.crt"
	return 0
}

pg_sockdir() {
	local d=$PGDIR/run
	# A Unix socket path is limited to 107 bytes; fall back to a short /tmp dir.
	if ((${#d} + 20 > 100)); then
		if [[ -n $PG_SOCKDIR && $PG_SOCKDIR != "$d" && -d $PG_SOCKDIR ]]; then
			d=$PG_SOCKDIR
		else
			d=$(mktemp -d /tmp/relay-pg.XXXXXX)
		fi
	fi
	mkdir -p "$d"
	if is_root; then
		chown postgres: "$d"
		make_traversable "$d"
	fi
	PG_SOCKDIR=$d
}

pg_write_conf() {
	# TLS only where pg_init made the certificate (not in an older data dir).
	local ssl=off
	[[ -f $PGDATA_DIR/server.crt ]] && ssl=on
	cat >"$PGDATA_DIR/relay.conf" <<-EOF
		# Written by scripts/services.sh; rewritten at every start.
		port = $PG_PORT
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$PG_SOCKDIR'
		wal_level = logical
		ssl = $ssl
		max_replication_slots = 32
		max_wal_senders = 32
		wal_sender_timeout = 60s
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_connections = 200
		shared_buffers = 256MB
		log_min_messages = warning
		logging_collector = off
		timezone = 'UTC'
		log_timezone = 'UTC'
	EOF
	is_root && chown postgres: "$PGDATA_DIR/relay.conf"
	return 0
}

pg_start() {
	if pg_running; then
		log "postgres already running (pid $(pg_pid), port $PG_PORT)"
		return 0
	fi
	pg_init
	pg_sockdir
	save_ports
	pg_write_conf
	pg_clear_stale
	mkdir -p "$PGDIR/log"
	is_root && chown postgres: "$PGDIR/log"
	log "starting postgres on 127.0.0.1:$PG_PORT"
	local out
	if ! out=$(cd "$PGDIR" && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" \
		-w -t "$READY_TIMEOUT" start 2>&1 </dev/null 9>&-); then
		printf '%s\n' "$out" >&2
		log "--- tail of $PGLOG"
		tail -n 30 "$PGLOG" >&2 2>/dev/null || true
		return 1
	fi
	pg_create_db
}

pg_create_db() {
	env -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGSSLMODE \
		"$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
		>/dev/null <<-'EOF'
			SELECT 'CREATE DATABASE relay' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'relay') \gexec
		EOF
}

# pg_clear_stale waits for a dead postmaster to vanish (a killed postmaster
# can linger as a zombie, which makes PostgreSQL believe it is still alive),
# then removes its stale lock files.
pg_clear_stale() {
	local pid='' deadline=$((SECONDS + 10))
	if [[ -f $PGDATA_DIR/postmaster.pid ]]; then
		{ read -r pid || true; } 2>/dev/null <"$PGDATA_DIR/postmaster.pid"
	fi
	if [[ $pid =~ ^[0-9]+$ ]]; then
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
	fi
	rm -f "$PGDATA_DIR/postmaster.pid" "$PG_SOCKDIR/.s.PGSQL.$PG_PORT" "$PG_SOCKDIR/.s.PGSQL.$PG_PORT.lock"
}

pg_stop() {
	if ! pg_running; then
		log "postgres is not running"
		return 0
	fi
	log "stopping postgres (pid $(pg_pid))"
	if ! (cd "$PGDIR" && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 </dev/null 9>&-); then
		log "fast stop failed; trying immediate"
		(cd "$PGDIR" && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1 </dev/null 9>&-) || true
	fi
	if pg_running; then
		local pid
		pid=$(pg_pid)
		log "postgres still running; SIGKILL $pid"
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

# ---------------------------------------------------------------- ClickHouse

ch_pid() { alive_pid "$CHPID" clickhouse; }

ch_running() { alive_pid "$CHPID" clickhouse >/dev/null; }

# ch_ping asks the HTTP interface for /ping (cheaper than starting the client).
ch_ping() {
	local resp
	# shellcheck disable=SC2016 # $1 is expanded by the inner bash
	resp=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf "GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' _ "$CH_HTTP_PORT" 2>/dev/null) || return 1
	[[ $resp == *Ok.* ]]
}

ch_write_conf() {
	mkdir -p "$CHDIR/data" "$CHDIR/tmp" "$CHDIR/user_files" "$CHDIR/format_schemas" "$CHDIR/log"
	cat >"$CHDIR/config.xml" <<-EOF
		<?xml version="1.0"?>
		<!-- Written by scripts/services.sh; rewritten at every start. -->
		<yandex>
		    <logger>
		        <level>warning</level>
		        <log>$CHLOG</log>
		        <errorlog>$CHERRLOG</errorlog>
		        <size>50M</size>
		        <count>2</count>
		    </logger>
		    <listen_host>127.0.0.1</listen_host>
		    <tcp_port>$CH_TCP_PORT</tcp_port>
		    <http_port>$CH_HTTP_PORT</http_port>
		    <max_connections>1024</max_connections>
		    <keep_alive_timeout>3</keep_alive_timeout>
		    <max_concurrent_queries>100</max_concurrent_queries>
		    <uncompressed_cache_size>268435456</uncompressed_cache_size>
		    <mark_cache_size>268435456</mark_cache_size>
		    <path>$CHDIR/data/</path>
		    <tmp_path>$CHDIR/tmp/</tmp_path>
		    <user_files_path>$CHDIR/user_files/</user_files_path>
		    <format_schema_path>$CHDIR/format_schemas/</format_schema_path>
		    <users_config>$CHDIR/users.xml</users_config>
		    <default_profile>default</default_profile>
		    <default_database>default</default_database>
		    <timezone>UTC</timezone>
		    <umask>022</umask>
		    <mlock_executable>false</mlock_executable>
		    <max_table_size_to_drop>0</max_table_size_to_drop>
		    <max_partition_size_to_drop>0</max_partition_size_to_drop>
		    <max_session_timeout>3600</max_session_timeout>
		    <default_session_timeout>60</default_session_timeout>
		$CH_EXTRA_CONF
		</yandex>
	EOF
	cat >"$CHDIR/users.xml" <<-'EOF'
		<?xml version="1.0"?>
		<!-- Written by scripts/services.sh. -->
		<yandex>
		    <profiles>
		        <default>
		            <max_memory_usage>4000000000</max_memory_usage>
		            <use_uncompressed_cache>0</use_uncompressed_cache>
		            <load_balancing>random</load_balancing>
		        </default>
		    </profiles>
		    <users>
		        <default>
		            <password></password>
		            <networks>
		                <ip>127.0.0.1</ip>
		                <ip>::1</ip>
		            </networks>
		            <profile>default</profile>
		            <quota>default</quota>
		        </default>
		    </users>
		    <quotas>
		        <default>
		            <interval>
		                <duration>3600</duration>
		                <queries>0</queries>
		                <errors>0</errors>
		                <result_rows>0</result_rows>
		                <read_rows>0</read_rows>
		                <execution_time>0</execution_time>
		            </interval>
		        </default>
		    </quotas>
		</yandex>
	EOF
}

ch_client() {
	"$CH_CLIENT" --host 127.0.0.1 --port "$CH_TCP_PORT" "$@"
}

ch_show_log() {
	local f
	for f in "$CHOUT" "$CHERRLOG"; do
		if [[ -s $f ]]; then
			log "--- tail of $f"
			tail -n 30 "$f" >&2 || true
		fi
	done
}

# ch_start starts ClickHouse and waits until it answers; returns 2 when the
# server died because a port was taken (so that `up` can pick others).
ch_start() {
	if ch_running; then
		log "$CH_NAME already running (pid $(ch_pid), tcp port $CH_TCP_PORT)"
		return 0
	fi
	ch_write_conf
	rm -f "$CHPID"
	: >"$CHOUT"
	: >"$CHERRLOG"
	log "starting $CH_NAME on 127.0.0.1:$CH_TCP_PORT (http $CH_HTTP_PORT)"
	# ClickHouse 18.16 runs fine as root; it runs as whoever calls this script.
	# The wrapper records its own pid, then execs the server in a new session.
	(
		cd "$CHDIR"
		# shellcheck disable=SC2016 # $$ and $1 are expanded by the inner bash
		exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$CHPID" \
			"$CH_SERVER" --config-file="$CHDIR/config.xml" \
			</dev/null >>"$CHOUT" 2>&1 9>&-
	) &
	local deadline=$((SECONDS + READY_TIMEOUT)) pid=''
	while ((SECONDS < deadline)); do
		if [[ -z $pid ]]; then
			pid=$(cat "$CHPID" 2>/dev/null || true)
		fi
		if [[ -n $pid ]] && ! proc_alive "$pid"; then
			log "$CH_NAME exited during startup"
			ch_show_log
			rm -f "$CHPID"
			if grep -qiE 'address already in use|cannot bind|DB::NetException: Net Exception: Address' "$CHERRLOG" "$CHOUT" 2>/dev/null; then
				return 2
			fi
			return 1
		fi
		if [[ -n $pid ]] && ch_ping && ch_client -q 'CREATE DATABASE IF NOT EXISTS relay' >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	log "$CH_NAME did not answer within ${READY_TIMEOUT}s"
	ch_show_log
	return 1
}

ch_stop() {
	local pid
	if ! pid=$(ch_pid); then
		log "$CH_NAME is not running"
		rm -f "$CHPID"
		return 0
	fi
	log "stopping $CH_NAME (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while proc_alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if proc_alive "$pid"; then
		log "$CH_NAME still running after 30s; SIGKILL $pid"
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 10))
		while proc_alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.1
		done
	fi
	rm -f "$CHPID"
}

# ---------------------------------------------------------------- cluster

# The cluster lives in $DIR/cluster: ZooKeeper and four ClickHouse replicas,
# node i = shard (i+1)/2, replica 2-i%2, each with its own ports and paths.
CLDIR=$DIR/cluster
CLPORTS=$CLDIR/ports
CLENV=$CLDIR/env
CLUSTER_NAME=relay_cluster
CLUSTER_NODES=4
ZK_JAR=/usr/share/java/zookeeper.jar
ZKDIR=$CLDIR/zookeeper
ZKPID=$CLDIR/zookeeper.pid
ZKOUT=$ZKDIR/stdout.log
ZK_PORT=''
NODE_TCP=() NODE_HTTP=() NODE_INTER=()

ensure_cluster_packages() {
	local missing=()
	[[ -r $ZK_JAR ]] || missing+=(zookeeper)
	command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
	((${#missing[@]} == 0)) || apt_install "${missing[@]}"
	[[ -r $ZK_JAR ]] && command -v java >/dev/null 2>&1 || die "zookeeper / java still missing after apt-get install"
}

load_cluster_ports() {
	[[ -f $CLPORTS ]] || return 1
	# shellcheck disable=SC1090
	source "$CLPORTS"
	[[ -n $ZK_PORT && ${#NODE_TCP[@]} -eq $CLUSTER_NODES ]]
}

save_cluster_ports() {
	mkdir -p "$CLDIR"
	# declare -g: the file is sourced inside a function.
	declare -p ZK_PORT NODE_TCP NODE_HTTP NODE_INTER | sed 's/^declare /declare -g /' >"$CLPORTS.tmp"
	mv -f "$CLPORTS.tmp" "$CLPORTS"
}

# cluster_taken prints every port the state dir uses (so new ones differ).
cluster_taken() {
	printf '%s\n' $PG_PORT $CH_TCP_PORT $CH_HTTP_PORT $ZK_PORT "${NODE_TCP[@]}" "${NODE_HTTP[@]}" "${NODE_INTER[@]}"
}

pick_node_ports() {
	local i=$1 taken
	mapfile -t taken < <(cluster_taken)
	NODE_TCP[i]=$(pick_port "${taken[@]}")
	NODE_HTTP[i]=$(pick_port "${taken[@]}" "${NODE_TCP[i]}")
	NODE_INTER[i]=$(pick_port "${taken[@]}" "${NODE_TCP[i]}" "${NODE_HTTP[i]}")
}

zk_pid() { alive_pid "$ZKPID" java; }

zk_running() { zk_pid >/dev/null; }

zk_ruok() {
	local resp
	# shellcheck disable=SC2016 # $1 is expanded by the inner bash
	resp=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf ruok >&3 && cat <&3' _ "$ZK_PORT" 2>/dev/null) || return 1
	[[ $resp == imok ]]
}

zk_write_conf() {
	mkdir -p "$ZKDIR/data"
	# The AdminServer (an HTTP console on 8080) is switched off.
	cat >"$ZKDIR/zoo.cfg" <<-EOF
		# Written by scripts/services.sh; rewritten at every start.
		tickTime=2000
		dataDir=$ZKDIR/data
		clientPort=$ZK_PORT
		clientPortAddress=127.0.0.1
		admin.enableServer=false
		4lw.commands.whitelist=ruok,srvr,mntr
		maxClientCnxns=0
		autopurge.snapRetainCount=3
		autopurge.purgeInterval=1
	EOF
}

# zk_start starts ZooKeeper and waits for "imok"; returns 2 when its port was taken.
zk_start() {
	if zk_running; then
		log "zookeeper already running (pid $(zk_pid), port $ZK_PORT)"
		return 0
	fi
	zk_write_conf
	rm -f "$ZKPID"
	: >"$ZKOUT"
	log "starting zookeeper on 127.0.0.1:$ZK_PORT"
	(
		cd "$ZKDIR"
		# shellcheck disable=SC2016 # $$ and $1 are expanded by the inner bash
		exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$ZKPID" \
			java -Xmx256m -XX:+UseSerialGC -Dzookeeper.admin.enableServer=false \
			-cp "$ZKDIR:$ZK_JAR" org.apache.zookeeper.server.ZooKeeperServerMain "$ZKDIR/zoo.cfg" \
			</dev/null >>"$ZKOUT" 2>&1 9>&-
	) &
	local deadline=$((SECONDS + READY_TIMEOUT)) pid=''
	while ((SECONDS < deadline)); do
		[[ -n $pid ]] || pid=$(cat "$ZKPID" 2>/dev/null || true)
		if [[ -n $pid ]] && ! proc_alive "$pid"; then
			log "zookeeper exited during startup; --- tail of $ZKOUT"
			tail -n 30 "$ZKOUT" >&2 || true
			rm -f "$ZKPID"
			grep -qi 'address already in use' "$ZKOUT" && return 2
			return 1
		fi
		[[ -n $pid ]] && zk_ruok && return 0
		sleep 0.1
	done
	log "zookeeper did not answer within ${READY_TIMEOUT}s"
	return 1
}

# stop_pid NAME PID stops a process: TERM, then KILL after 30 s (at once
# with --kill as the third argument).
stop_pid() {
	local name=$1 pid=$2 sig=TERM
	[[ ${3:-} == --kill ]] && sig=KILL
	log "stopping $name (pid $pid, SIG$sig)"
	kill -"$sig" "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while proc_alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if proc_alive "$pid"; then
		log "$name still running after 30s; SIGKILL $pid"
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 10))
		while proc_alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.1
		done
	fi
}

zk_stop() {
	local pid
	if pid=$(zk_pid); then
		stop_pid zookeeper "$pid" "${1:-}"
	else
		log "zookeeper is not running"
	fi
	rm -f "$ZKPID"
}

node_shard() { echo $((($1 + 1) / 2)); }
node_replica() { echo $((2 - $1 % 2)); }

# node_conf I is replica I's part of config.xml: ZooKeeper, macros, the
# cluster (internal_replication: each shard's replicas copy each other, a
# Distributed table writes to one of them) and the ON CLUSTER DDL queue.
node_conf() {
	local i=$1 s r j
	printf '<interserver_http_host>127.0.0.1</interserver_http_host>\n'
	printf '<interserver_http_port>%s</interserver_http_port>\n' "${NODE_INTER[i]}"
	printf '<zookeeper><node><host>127.0.0.1</host><port>%s</port></node><session_timeout_ms>30000</session_timeout_ms></zookeeper>\n' "$ZK_PORT"
	printf '<macros><shard>%s</shard><replica>s%sr%s</replica></macros>\n' "$(node_shard "$i")" "$(node_shard "$i")" "$(node_replica "$i")"
	printf '<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n'
	printf '<remote_servers><%s>\n' "$CLUSTER_NAME"
	for ((s = 1; s <= CLUSTER_NODES / 2; s++)); do
		printf '<shard><internal_replication>true</internal_replication>\n'
		for ((r = 1; r <= 2; r++)); do
			j=$((2 * (s - 1) + r))
			printf '<replica><host>127.0.0.1</host><port>%s</port></replica>\n' "${NODE_TCP[j]}"
		done
		printf '</shard>\n'
	done
	printf '</%s></remote_servers>\n' "$CLUSTER_NAME"
}

# bind_node I points the ClickHouse functions at replica I; callers declare
# the variables local first, so the single server's stay as they were.
bind_node() {
	local i=$1
	CHDIR=$CLDIR/ch$i
	CHPID=$CLDIR/ch$i.pid
	CHLOG=$CHDIR/log/clickhouse-server.log
	CHERRLOG=$CHDIR/log/clickhouse-server.err.log
	CHOUT=$CHDIR/log/stdout.log
	CH_TCP_PORT=${NODE_TCP[i]}
	CH_HTTP_PORT=${NODE_HTTP[i]}
	CH_NAME="clickhouse replica $i"
	CH_EXTRA_CONF=$(node_conf "$i")
}

node_start() {
	local CHDIR CHPID CHLOG CHERRLOG CHOUT CH_TCP_PORT CH_HTTP_PORT CH_NAME CH_EXTRA_CONF
	bind_node "$1"
	ch_start
}

node_stop() {
	local CHDIR CHPID CHLOG CHERRLOG CHOUT CH_TCP_PORT CH_HTTP_PORT CH_NAME CH_EXTRA_CONF pid
	bind_node "$1"
	if pid=$(ch_pid); then
		stop_pid "$CH_NAME" "$pid" "${2:-}"
	else
		log "$CH_NAME is not running"
	fi
	rm -f "$CHPID"
}

node_pid() {
	local CHDIR CHPID CHLOG CHERRLOG CHOUT CH_TCP_PORT CH_HTTP_PORT CH_NAME CH_EXTRA_CONF
	bind_node "$1"
	ch_pid
}

print_cluster_env() {
	local i urls=''
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		urls+=${urls:+,}clickhouse://default:@127.0.0.1:${NODE_TCP[i]}/relay
	done
	emit CLICKHOUSE_CLUSTER_NAME "$CLUSTER_NAME"
	emit CLICKHOUSE_CLUSTER_URLS "$urls"
	emit ZOOKEEPER_PORT "$ZK_PORT"
}

need_cluster() {
	load_ports || true
	load_cluster_ports || die "the cluster is not set up in $CLDIR; run: scripts/services.sh cluster-up"
}

cluster_all_running() {
	local i
	zk_running || return 1
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		node_pid "$i" >/dev/null || return 1
	done
}

cmd_cluster_up() {
	ensure_packages
	ensure_cluster_packages
	lock_state
	load_ports || true
	if load_cluster_ports && cluster_all_running; then
		print_cluster_env | tee "$CLENV"
		return 0
	fi
	local i try rc taken
	mkdir -p "$CLDIR"
	if [[ -z $ZK_PORT ]] || { ! zk_running && port_in_use "$ZK_PORT"; }; then
		mapfile -t taken < <(cluster_taken)
		ZK_PORT=$(pick_port "${taken[@]}")
	fi
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		if [[ -z ${NODE_TCP[i]:-} ]] || { ! node_pid "$i" >/dev/null &&
			{ port_in_use "${NODE_TCP[i]}" || port_in_use "${NODE_HTTP[i]}" || port_in_use "${NODE_INTER[i]}"; }; }; then
			pick_node_ports "$i"
		fi
	done
	save_cluster_ports
	for try in 1 2 3; do
		rc=0
		zk_start || rc=$?
		((rc == 0)) && break
		((rc == 2 && try < 3)) || die "zookeeper failed to start (log: $ZKOUT)"
		mapfile -t taken < <(cluster_taken)
		ZK_PORT=$(pick_port "${taken[@]}")
		save_cluster_ports
	done
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		for try in 1 2 3; do
			rc=0
			node_start "$i" || rc=$?
			((rc == 0)) && break
			((rc == 2 && try < 3)) || die "clickhouse replica $i failed to start (logs: $CLDIR/ch$i/log)"
			pick_node_ports "$i"
			save_cluster_ports
			log "port clash; retrying clickhouse replica $i"
		done
	done
	log "cluster up: zookeeper 127.0.0.1:$ZK_PORT, clickhouse ${NODE_TCP[*]} (state: $CLDIR)"
	print_cluster_env | tee "$CLENV"
}

cmd_cluster_down() {
	[[ -d $CLDIR ]] || return 0
	load_cluster_ports || return 0
	local i
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		node_stop "$i"
	done
	zk_stop
}

cmd_cluster_status() {
	local ok=0 i pid
	need_cluster
	if pid=$(zk_pid); then
		echo "zookeeper:  running (pid $pid, 127.0.0.1:$ZK_PORT)"
	else
		echo "zookeeper:  stopped"
		ok=1
	fi
	for ((i = 1; i <= CLUSTER_NODES; i++)); do
		if pid=$(node_pid "$i"); then
			echo "replica $i:  running (pid $pid, shard $(node_shard "$i") replica $(node_replica "$i"), 127.0.0.1:${NODE_TCP[i]})"
		else
			echo "replica $i:  stopped"
			ok=1
		fi
	done
	return "$ok"
}

# node_arg checks a replica number.
node_arg() {
	[[ ${1:-} =~ ^[1-9]$ ]] && (($1 <= CLUSTER_NODES)) || die "replica number 1..$CLUSTER_NODES expected, got '${1:-}'"
}

cmd_cluster_one() {
	local what=$1
	shift
	[[ $what == start-* ]] && { ensure_packages; ensure_cluster_packages; }
	lock_state
	need_cluster
	case $what in
	stop-replica) node_arg "${1:-}"; node_stop "$1" "${2:-}" ;;
	start-replica) node_arg "${1:-}"; node_start "$1" || die "clickhouse replica $1 failed to start" ;;
	stop-zookeeper) zk_stop "${1:-}" ;;
	start-zookeeper) zk_start || die "zookeeper failed to start (log: $ZKOUT)" ;;
	esac
}

# ---------------------------------------------------------------- PostgreSQL 17

# PostgreSQL 17 is not in Debian 12's packages; Debian 13's postgresql-17
# runs from a trixie folder made once by debootstrap (a cache outside the
# work tree, shared by every state dir and reused by later runs). Each
# server runs chrooted in that folder, in a private mount namespace where
# its own state dir ($DIR/<name>) is bound at /srv/relay, so servers of many
# state dirs share one folder without seeing each other's files.
TRIXIE_ROOT=${RELAY_TRIXIE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/outbox-relay/trixie}
TRIXIE_READY=.relay-pg17-ready
PG17_IN_BIN=/usr/lib/postgresql/17/bin
PG17_MOUNT=/srv/relay
# The instance the PostgreSQL 17 functions act on: the shared server pg17;
# pg17_bind rebinds them (as locals) to the failover pair's servers.
PG17_NAME=pg17
PG17_PORT=''

# trixie_ensure makes the trixie folder with postgresql-17 in it, once. It
# is built in a temp dir and renamed when complete, under a lock, so that
# concurrent runs wait for one build and never see half a folder.
trixie_ensure() {
	[[ -f $TRIXIE_ROOT/$TRIXIE_READY ]] && return 0
	is_root || die "PostgreSQL 17 needs a Debian trixie folder at $TRIXIE_ROOT, made as root (debootstrap, chroot); run: sudo $0 pg17-up (make test without it: RELAY_TEST_PG17=off make test)"
	command -v debootstrap >/dev/null 2>&1 || find_bin debootstrap >/dev/null || apt_install debootstrap
	mkdir -p "$(dirname "$TRIXIE_ROOT")"
	local lockfd
	exec {lockfd}>"$TRIXIE_ROOT.lock"
	flock -w 900 "$lockfd" || die "timed out waiting for another build of $TRIXIE_ROOT"
	if [[ -f $TRIXIE_ROOT/$TRIXIE_READY ]]; then
		exec {lockfd}>&-
		return 0
	fi
	local tmp=$TRIXIE_ROOT.tmp.$$ started=$SECONDS
	rm -rf "$TRIXIE_ROOT".tmp.*
	log "making the Debian trixie folder for PostgreSQL 17 in $TRIXIE_ROOT (debootstrap, once; ~1 GB)..."
	if ! "$(find_bin debootstrap)" --variant=minbase trixie "$tmp" ${RELAY_DEBIAN_MIRROR:-} >"$tmp.log" 2>&1; then
		tail -n 30 "$tmp.log" >&2
		die "debootstrap trixie failed (log: $tmp.log)"
	fi
	# No cluster of its own, and no service starts inside the chroot.
	mkdir -p "$tmp/etc/postgresql-common/createcluster.d" "$tmp$PG17_MOUNT"
	echo 'create_main_cluster = false' >"$tmp/etc/postgresql-common/createcluster.d/relay.conf"
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 0755 "$tmp/usr/sbin/policy-rc.d"
	log "installing postgresql-17 in the trixie folder (apt-get in the chroot)..."
	if ! chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C \
		sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-17 && apt-get clean' >>"$tmp.log" 2>&1; then
		tail -n 30 "$tmp.log" >&2
		die "apt-get install postgresql-17 in the trixie folder failed (log: $tmp.log)"
	fi
	[[ -x $tmp$PG17_IN_BIN/postgres ]] || die "postgresql-17 is installed but $PG17_IN_BIN/postgres is missing"
	touch "$tmp/$TRIXIE_READY"
	rm -rf "$TRIXIE_ROOT"
	mv "$tmp" "$TRIXIE_ROOT"
	rm -f "$tmp.log"
	exec {lockfd}>&-
	log "trixie folder ready in $((SECONDS - started))s"
}

# pg17_bind NAME points the PostgreSQL 17 functions at instance NAME.
pg17_bind() {
	PG17_NAME=$1
	PG17DIR=$DIR/$1
	PG17PORTS=$DIR/$1.port
	PG17_PORT=''
	[[ -f $PG17PORTS ]] && read -r PG17_PORT <"$PG17PORTS"
	return 0
}
pg17_bind pg17

# pg17_ids prints the uid:gid of the chroot's postgres user (its own
# passwd file: the host's postgres may have other ids).
pg17_ids() {
	local u g
	u=$(chroot "$TRIXIE_ROOT" /usr/bin/id -u postgres) && g=$(chroot "$TRIXIE_ROOT" /usr/bin/id -g postgres) || die "no postgres user in $TRIXIE_ROOT"
	echo "$u:$g"
}

# pg17_in CMD... runs CMD as the chroot's postgres user inside the trixie
# folder, with $PG17DIR bound at $PG17_MOUNT and a private /dev/shm, in a
# mount namespace of its own (a server started here keeps it; nothing is
# mounted on the host).
pg17_in() {
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare --mount --propagation private -- sh -c '
		root=$1 dir=$2 mnt=$3 ids=$4; shift 4
		mount --bind "$dir" "$root$mnt" && mount -t tmpfs -o size=512m,mode=1777 tmpfs "$root/dev/shm" &&
			mount -t proc proc "$root/proc" || exit 1
		exec chroot --userspec="$ids" "$root" /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C \
			HOME=/var/lib/postgresql USER=postgres "$@"' _ "$TRIXIE_ROOT" "$PG17DIR" "$PG17_MOUNT" "$(pg17_ids)" "$@"
}

pg17_pid() { alive_pid "$PG17DIR/data/postmaster.pid" postgres; }

pg17_running() { pg17_pid >/dev/null; }

pg17_init() {
	[[ -f $PG17DIR/data/PG_VERSION ]] && return 0
	log "initdb $PG17DIR/data (PostgreSQL 17)"
	rm -rf "$PG17DIR"
	mkdir -p "$PG17DIR/log" "$PG17DIR/run"
	chown -R "$(pg17_ids)" "$PG17DIR"
	local out
	if ! out=$(pg17_in "$PG17_IN_BIN/initdb" -D "$PG17_MOUNT/data" -U postgres \
		--auth=trust --encoding=UTF8 --locale=C --no-sync 2>&1 9>&-); then
		printf '%s\n' "$out" >&2
		die "initdb (PostgreSQL 17) failed"
	fi
	cat >"$PG17DIR/data/pg_hba.conf" <<-'EOF'
		# TYPE  DATABASE     USER  ADDRESS        METHOD
		local   all          all                  trust
		local   replication  all                  trust
		host    all          all   127.0.0.1/32   trust
		host    replication  all   127.0.0.1/32   trust
	EOF
	echo "include_if_exists = 'relay.conf'" >>"$PG17DIR/data/postgresql.conf"
	chown "$(pg17_ids)" "$PG17DIR/data/pg_hba.conf" "$PG17DIR/data/postgresql.conf"
}

# pg17_write_conf is pg_write_conf's settings for a PostgreSQL 17 server,
# plus relay-extra.conf (the failover pair's settings), kept across starts.
pg17_write_conf() {
	cat >"$PG17DIR/data/relay.conf" <<-EOF
		# Written by scripts/services.sh; rewritten at every start.
		port = $PG17_PORT
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$PG17_MOUNT/run'
		wal_level = logical
		max_replication_slots = 32
		max_wal_senders = 32
		wal_sender_timeout = 60s
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_connections = 200
		shared_buffers = 128MB
		log_min_messages = warning
		logging_collector = off
		timezone = 'UTC'
		log_timezone = 'UTC'
		include_if_exists = 'relay-extra.conf'
	EOF
	chown "$(pg17_ids)" "$PG17DIR/data/relay.conf"
}

# pg17_start starts the bound instance; returns 2 when its port was taken.
pg17_start() {
	if pg17_running; then
		log "$PG17_NAME already running (pid $(pg17_pid), port $PG17_PORT)"
		return 0
	fi
	[[ -n $PG17_PORT ]] && ! port_in_use "$PG17_PORT" || PG17_PORT=$(pick_port $PG_PORT $CH_TCP_PORT $CH_HTTP_PORT)
	echo "$PG17_PORT" >"$PG17PORTS"
	pg17_init
	pg17_write_conf
	rm -f "$PG17DIR/data/postmaster.pid"
	log "starting $PG17_NAME (PostgreSQL 17) on 127.0.0.1:$PG17_PORT"
	local out
	if ! out=$(pg17_in "$PG17_IN_BIN/pg_ctl" -D "$PG17_MOUNT/data" -l "$PG17_MOUNT/log/postgresql.log" \
		-w -t "$READY_TIMEOUT" start 2>&1 </dev/null 9>&-); then
		printf '%s\n' "$out" >&2
		log "--- tail of $PG17DIR/log/postgresql.log"
		tail -n 30 "$PG17DIR/log/postgresql.log" >&2 2>/dev/null || true
		grep -qiE 'could not (bind|create listen socket)|address already in use' "$PG17DIR/log/postgresql.log" 2>/dev/null && return 2
		return 1
	fi
}

# pg17_stop stops the bound instance by its PID: SIGINT (fast shutdown;
# SIGTERM would wait for the replication connections), or SIGKILL at once
# with --kill (a crash).
pg17_stop() {
	local pid
	if ! pid=$(pg17_pid); then
		log "$PG17_NAME is not running"
		return 0
	fi
	if [[ ${1:-} == --kill ]]; then
		stop_pid "$PG17_NAME" "$pid" --kill
		return 0
	fi
	log "stopping $PG17_NAME (pid $pid, SIGINT)"
	kill -INT "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while proc_alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	proc_alive "$pid" && stop_pid "$PG17_NAME" "$pid" --kill
	return 0
}

pg17_psql() {
	env -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGSSLMODE \
		"$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG17_PORT" -U postgres "$@"
}

pg17_url() { echo "postgres://postgres@127.0.0.1:$1/relay?sslmode=disable"; }

print_pg17_env() {
	emit DATABASE_URL_PG17 "$(pg17_url "$PG17_PORT")"
	emit PGPORT_RELAY_PG17 "$PG17_PORT"
}

# pg17_up_one starts the bound instance (retrying on a port clash) and
# creates the relay database.
pg17_up_one() {
	local try rc
	for try in 1 2 3; do
		rc=0
		pg17_start || rc=$?
		((rc == 0)) && break
		((rc == 2 && try < 3)) || die "$PG17_NAME failed to start (log: $PG17DIR/log/postgresql.log)"
		PG17_PORT=''
		log "port clash; retrying $PG17_NAME"
	done
	pg17_psql -d postgres >/dev/null <<-'EOF'
		SELECT 'CREATE DATABASE relay' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'relay') \gexec
	EOF
}

cmd_pg17_up() {
	ensure_packages
	trixie_ensure
	lock_state
	load_ports || true
	pg17_up_one
	print_pg17_env | tee "$DIR/pg17.env"
}

cmd_pg17_status() {
	if pg17_running; then
		echo "postgres 17: running (pid $(pg17_pid), 127.0.0.1:$PG17_PORT, folder $TRIXIE_ROOT)"
		return 0
	fi
	echo "postgres 17: stopped"
	return 1
}

# The failover pair: a PostgreSQL 17 primary (pg17a) and its physical
# standby (pg17b) with logical slot synchronization, for the failover tests
# (which change the primary's settings, kill it and promote the standby, so
# they get servers of their own). The standby streams through the physical
# slot relay_standby, which the primary names in synchronized_standby_slots.
PG17_STANDBY_SLOT=relay_standby

pg17_extra_conf() {
	cat >"$PG17DIR/data/relay-extra.conf"
	chown "$(pg17_ids)" "$PG17DIR/data/relay-extra.conf"
}

cmd_pg17_pair_up() {
	ensure_packages
	trixie_ensure
	lock_state
	load_ports || true
	local primary_port
	pg17_bind pg17a
	if ! [[ -f $PG17DIR/data/PG_VERSION ]]; then
		pg17_init
		# synchronous_commit as in production: a commit's WAL goes out at
		# once (the test servers' relay.conf turns it off for speed).
		pg17_extra_conf <<-EOF
			synchronized_standby_slots = '$PG17_STANDBY_SLOT'
			synchronous_commit = on
		EOF
	fi
	pg17_up_one
	primary_port=$PG17_PORT
	pg17_bind pg17b
	if ! [[ -f $PG17DIR/data/PG_VERSION ]]; then
		rm -rf "$PG17DIR"
		mkdir -p "$PG17DIR/log" "$PG17DIR/run"
		chown -R "$(pg17_ids)" "$PG17DIR"
		local out
		log "pg_basebackup of pg17a into $PG17DIR/data"
		if ! out=$(pg17_in "$PG17_IN_BIN/pg_basebackup" -D "$PG17_MOUNT/data" -R -C -S "$PG17_STANDBY_SLOT" \
			-X stream -c fast -d "host=127.0.0.1 port=$primary_port user=postgres dbname=relay" 2>&1 9>&-); then
			printf '%s\n' "$out" >&2
			die "pg_basebackup for the standby failed"
		fi
		pg17_extra_conf <<-EOF
			primary_slot_name = '$PG17_STANDBY_SLOT'
			hot_standby = on
			hot_standby_feedback = on
			sync_replication_slots = on
		EOF
	fi
	pg17_start || die "pg17b (standby) failed to start (log: $PG17DIR/log/postgresql.log)"
	print_pg17_pair_env | tee "$DIR/pg17-pair.env"
}

print_pg17_pair_env() {
	local a b
	a=$(cat "$DIR/pg17a.port") b=$(cat "$DIR/pg17b.port")
	emit DATABASE_URL_PG17_PRIMARY "$(pg17_url "$a")"
	emit DATABASE_URL_PG17_STANDBY "$(pg17_url "$b")"
	emit PG17_STANDBY_SLOT "$PG17_STANDBY_SLOT"
}

# pg17_name checks an instance name.
pg17_name() {
	case ${1:-} in
	pg17 | pg17a | pg17b) ;;
	*) die "instance pg17, pg17a or pg17b expected, got '${1:-}'" ;;
	esac
}

# cmd_pg17_pair_down stops the failover pair; --purge also deletes its data
# (its ports are kept), so that pg17-pair-up makes a new pair, e.g. after a
# test promoted the standby.
cmd_pg17_pair_down() {
	local n
	lock_state
	for n in pg17a pg17b; do
		pg17_bind "$n"
		pg17_stop
		[[ ${1:-} == --purge ]] && rm -rf "$PG17DIR"
	done
	pg17_bind pg17
}

# cmd_pg17_down stops every PostgreSQL 17 instance of the state dir.
cmd_pg17_down() {
	local n
	for n in pg17 pg17a pg17b; do
		pg17_bind "$n"
		[[ -d $PG17DIR ]] && pg17_stop
	done
	pg17_bind pg17
}

# ------------------------------------------------------ PostgreSQL 15 pair

# The PostgreSQL 15 failover pair: a primary (pg15a) and its physical
# standby (pg15b), from Debian's postgresql-15 like the shared server, for
# the failover test on 15, which has no failover slots: once the standby is
# promoted the relay's slot is gone. The standby streams through the
# physical slot relay_standby, synchronously once it is up, so that a commit
# returns only when the standby has it and a failover loses no commit the
# test counts as acknowledged. TCP on loopback only (no Unix socket, so no
# socket path limit on the state dir).
PG15_STANDBY_SLOT=relay_standby
PG15_NAME='' PG15DIR='' PG15_PORT=''

# pg15_bind NAME points the pair's functions at instance NAME.
pg15_bind() {
	PG15_NAME=$1
	PG15DIR=$DIR/$1
	PG15_PORT=''
	[[ -f $DIR/$1.port ]] && read -r PG15_PORT <"$DIR/$1.port"
	return 0
}

pg15_pid() { alive_pid "$PG15DIR/data/postmaster.pid" postgres; }

# pg15_fresh makes the bound instance's dir anew, reachable by the postgres
# user (initdb and the server refuse root).
pg15_fresh() {
	rm -rf "$PG15DIR"
	mkdir -p "$PG15DIR/log"
	if is_root; then
		chown -R postgres: "$PG15DIR"
		chmod 0700 "$PG15DIR"
		make_traversable "$PG15DIR"
	fi
}

# pg15_own gives the files named (in the bound data dir) to postgres.
pg15_own() {
	local f
	is_root || return 0
	for f; do chown postgres: "$PG15DIR/data/$f"; done
}

pg15_init() {
	pg15_fresh
	log "initdb $PG15DIR/data (PostgreSQL 15)"
	local out
	if ! out=$(cd "$PG15DIR" && as_pg "$PG_BIN/initdb" -D "$PG15DIR/data" -U postgres \
		--auth=trust --encoding=UTF8 --locale=C --no-sync 2>&1 9>&-); then
		printf '%s\n' "$out" >&2
		die "initdb ($PG15_NAME) failed"
	fi
	cat >"$PG15DIR/data/pg_hba.conf" <<-'EOF'
		# TYPE  DATABASE     USER  ADDRESS        METHOD
		host    all          all   127.0.0.1/32   trust
		host    replication  all   127.0.0.1/32   trust
	EOF
	echo "include_if_exists = 'relay.conf'" >>"$PG15DIR/data/postgresql.conf"
	pg15_own pg_hba.conf postgresql.conf
}

# pg15_extra_conf writes stdin to the bound instance's relay-extra.conf
# (its role in the pair), kept across starts.
pg15_extra_conf() {
	cat >"$PG15DIR/data/relay-extra.conf"
	pg15_own relay-extra.conf
}

# pg15_write_conf is pg_write_conf's settings for a server of the pair.
pg15_write_conf() {
	cat >"$PG15DIR/data/relay.conf" <<-EOF
		# Written by scripts/services.sh; rewritten at every start.
		port = $PG15_PORT
		listen_addresses = '127.0.0.1'
		unix_socket_directories = ''
		wal_level = logical
		max_replication_slots = 32
		max_wal_senders = 32
		wal_sender_timeout = 60s
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_connections = 200
		shared_buffers = 128MB
		log_min_messages = warning
		logging_collector = off
		timezone = 'UTC'
		log_timezone = 'UTC'
		include_if_exists = 'relay-extra.conf'
	EOF
	pg15_own relay.conf
}

# pg15_start starts the bound instance; returns 2 when its port was taken.
pg15_start() {
	if pg15_pid >/dev/null; then
		log "$PG15_NAME already running (pid $(pg15_pid), port $PG15_PORT)"
		return 0
	fi
	[[ -n $PG15_PORT ]] && ! port_in_use "$PG15_PORT" || PG15_PORT=$(pick_port $PG_PORT $CH_TCP_PORT $CH_HTTP_PORT)
	echo "$PG15_PORT" >"$DIR/$PG15_NAME.port"
	pg15_write_conf
	rm -f "$PG15DIR/data/postmaster.pid"
	log "starting $PG15_NAME (PostgreSQL 15) on 127.0.0.1:$PG15_PORT"
	local out
	if ! out=$(cd "$PG15DIR" && as_pg "$PG_BIN/pg_ctl" -D "$PG15DIR/data" -l "$PG15DIR/log/postgresql.log" \
		-w -t "$READY_TIMEOUT" start 2>&1 </dev/null 9>&-); then
		printf '%s\n' "$out" >&2
		log "--- tail of $PG15DIR/log/postgresql.log"
		tail -n 30 "$PG15DIR/log/postgresql.log" >&2 2>/dev/null || true
		grep -qiE 'could not (bind|create listen socket)|address already in use' "$PG15DIR/log/postgresql.log" 2>/dev/null && return 2
		return 1
	fi
}

# pg15_stop stops the bound instance by its PID: SIGINT (fast shutdown),
# or SIGKILL at once with --kill (a crash).
pg15_stop() {
	local pid
	if ! pid=$(pg15_pid); then
		log "$PG15_NAME is not running"
		return 0
	fi
	if [[ ${1:-} == --kill ]]; then
		stop_pid "$PG15_NAME" "$pid" --kill
		return 0
	fi
	log "stopping $PG15_NAME (pid $pid, SIGINT)"
	kill -INT "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while proc_alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	proc_alive "$pid" && stop_pid "$PG15_NAME" "$pid" --kill
	return 0
}

pg15_psql() {
	env -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGSSLMODE \
		"$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG15_PORT" -U postgres "$@"
}

# pg15_up_one starts the bound instance, retrying on a port clash.
pg15_up_one() {
	local try rc
	for try in 1 2 3; do
		rc=0
		pg15_start || rc=$?
		((rc == 0)) && return 0
		((rc == 2 && try < 3)) || die "$PG15_NAME failed to start (log: $PG15DIR/log/postgresql.log)"
		PG15_PORT=''
		log "port clash; retrying $PG15_NAME"
	done
}

cmd_pg15_pair_up() {
	ensure_packages
	[[ -x $PG_BIN/pg_basebackup ]] || die "$PG_BIN/pg_basebackup is missing (package postgresql-client-15): the PostgreSQL 15 pair needs it for its standby"
	lock_state
	load_ports || true
	local primary_port out
	pg15_bind pg15a
	if ! [[ -f $PG15DIR/data/PG_VERSION ]]; then
		pg15_init
		# synchronous_commit as in production (the test servers' relay.conf
		# turns it off for speed): with the standby named below, a commit
		# waits until the standby has flushed it.
		pg15_extra_conf <<-'EOF'
			synchronous_commit = on
		EOF
	fi
	pg15_up_one
	pg15_psql -d postgres >/dev/null <<-'EOF'
		SELECT 'CREATE DATABASE relay' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'relay') \gexec
	EOF
	primary_port=$PG15_PORT
	pg15_bind pg15b
	if ! [[ -f $PG15DIR/data/PG_VERSION ]]; then
		pg15_fresh
		log "pg_basebackup of pg15a into $PG15DIR/data"
		if ! out=$(cd "$PG15DIR" && as_pg "$PG_BIN/pg_basebackup" -D "$PG15DIR/data" -R -C -S "$PG15_STANDBY_SLOT" \
			-X stream -c fast -d "host=127.0.0.1 port=$primary_port user=postgres dbname=relay" 2>&1 9>&-); then
			printf '%s\n' "$out" >&2
			die "pg_basebackup for the PostgreSQL 15 standby failed"
		fi
		pg15_extra_conf <<-EOF
			primary_slot_name = '$PG15_STANDBY_SLOT'
			hot_standby = on
			hot_standby_feedback = on
		EOF
	fi
	pg15_up_one
	# Synchronous replication from now on (not before: the primary's own
	# setup would wait for a standby that did not exist yet).
	pg15_bind pg15a
	if ! grep -q '^synchronous_standby_names' "$PG15DIR/data/relay-extra.conf"; then
		echo "synchronous_standby_names = '*'" >>"$PG15DIR/data/relay-extra.conf"
		pg15_psql -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
	fi
	print_pg15_pair_env | tee "$DIR/pg15-pair.env"
}

print_pg15_pair_env() {
	emit DATABASE_URL_PG15_PRIMARY "postgres://postgres@127.0.0.1:$(cat "$DIR/pg15a.port")/relay?sslmode=disable"
	emit DATABASE_URL_PG15_STANDBY "postgres://postgres@127.0.0.1:$(cat "$DIR/pg15b.port")/relay?sslmode=disable"
	emit PG15_STANDBY_SLOT "$PG15_STANDBY_SLOT"
}

# pg15_name checks an instance name of the pair.
pg15_name() {
	case ${1:-} in
	pg15a | pg15b) ;;
	*) die "instance pg15a or pg15b expected, got '${1:-}'" ;;
	esac
}

# cmd_pg15_pair_down stops the pair; --purge also deletes its data (its
# ports are kept), so that pg15-pair-up makes a new pair, e.g. after a test
# promoted the standby.
cmd_pg15_pair_down() {
	local n
	for n in pg15a pg15b; do
		pg15_bind "$n"
		[[ -d $PG15DIR ]] || continue
		pg15_stop
		[[ ${1:-} == --purge ]] && rm -rf "$PG15DIR"
	done
	return 0
}

# ---------------------------------------------------------------- commands

need_state() {
	load_ports || die "services are not set up in $DIR; run: scripts/services.sh up"
}

cmd_up() {
	ensure_packages
	lock_state
	if load_ports && pg_running && ch_running; then
		write_env
		print_env
		return 0
	fi
	local -a taken=()
	if [[ -z $PG_PORT ]] || { ! pg_running && port_in_use "$PG_PORT"; }; then
		PG_PORT=$(pick_port)
	fi
	taken+=("$PG_PORT")
	if [[ -z $CH_TCP_PORT ]] || { ! ch_running && port_in_use "$CH_TCP_PORT"; }; then
		CH_TCP_PORT=$(pick_port "${taken[@]}")
	fi
	taken+=("$CH_TCP_PORT")
	if [[ -z $CH_HTTP_PORT ]] || { ! ch_running && port_in_use "$CH_HTTP_PORT"; }; then
		CH_HTTP_PORT=$(pick_port "${taken[@]}")
	fi
	taken+=("$CH_HTTP_PORT")
	save_ports

	local try
	for try in 1 2 3; do
		if pg_start; then
			break
		fi
		if ((try < 3)) && grep -qiE 'could not (bind|create listen socket)|address already in use' "$PGLOG" 2>/dev/null; then
			PG_PORT=$(pick_port "${taken[@]}")
			taken+=("$PG_PORT")
			log "port clash; retrying postgres on port $PG_PORT"
			continue
		fi
		die "postgres failed to start (log: $PGLOG)"
	done

	local rc
	for try in 1 2 3; do
		rc=0
		ch_start || rc=$?
		((rc == 0)) && break
		if ((rc == 2 && try < 3)); then
			CH_TCP_PORT=$(pick_port "${taken[@]}")
			taken+=("$CH_TCP_PORT")
			CH_HTTP_PORT=$(pick_port "${taken[@]}")
			taken+=("$CH_HTTP_PORT")
			save_ports
			log "port clash; retrying clickhouse on ports $CH_TCP_PORT/$CH_HTTP_PORT"
			continue
		fi
		die "clickhouse failed to start (logs: $CHDIR/log)"
	done
	save_ports
	write_env
	log "up: postgres 127.0.0.1:$PG_PORT, clickhouse 127.0.0.1:$CH_TCP_PORT (state: $DIR)"
	print_env
}

cmd_down() {
	local purge=0
	case ${1:-} in
	--purge) purge=1 ;;
	'') ;;
	*) die "usage: $0 down [--purge]" ;;
	esac
	if [[ ! -d $DIR ]]; then
		log "nothing to stop ($DIR does not exist)"
		return 0
	fi
	lock_state
	load_ports || true
	cmd_cluster_down
	cmd_pg17_down
	cmd_pg15_pair_down
	ch_stop
	pg_stop
	if ((purge)); then
		if [[ ! -e $DIR/$MARKER ]]; then
			die "$DIR has no $MARKER marker; not deleting it"
		fi
		if [[ -n $PG_SOCKDIR && $PG_SOCKDIR == /tmp/relay-pg.* ]]; then
			rm -rf "$PG_SOCKDIR"
		fi
		exec 9>&-
		rm -rf "$DIR"
		log "removed $DIR"
	fi
}

cmd_start_one() {
	ensure_packages
	lock_state
	need_state
	case $1 in
	postgres) pg_start || die "postgres failed to start (log: $PGLOG)" ;;
	clickhouse) ch_start || die "clickhouse failed to start (logs: $CHDIR/log)" ;;
	esac
}

cmd_stop_one() {
	[[ -d $DIR ]] || { log "nothing to stop ($DIR does not exist)"; return 0; }
	lock_state
	load_ports || true
	case $1 in
	postgres) pg_stop ;;
	clickhouse) ch_stop ;;
	esac
}

cmd_status() {
	local ok=0
	load_ports || true
	if pg_running; then
		echo "postgres:   running (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
	else
		echo "postgres:   stopped"
		ok=1
	fi
	if ch_running; then
		echo "clickhouse: running (pid $(ch_pid), 127.0.0.1:$CH_TCP_PORT, http $CH_HTTP_PORT)"
	else
		echo "clickhouse: stopped"
		ok=1
	fi
	echo "state dir:  $DIR"
	return "$ok"
}

usage() {
	sed -n '2,/^set -euo pipefail/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# cmd_browser makes sure chromium is there (Debian's package) and prints
# its path for the browser test.
# cmd_django finds a python3 with Django and psycopg2 (installing Debian's
# when none has them) for TestDjangoModelMatchesOutboxEvent.
cmd_django() {
	local py
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null && "$py" -c 'import django, psycopg2' 2>/dev/null; then
			printf "export RELAY_DJANGO_PYTHON='%s'\n" "$(command -v "$py")"
			return
		fi
	done
	apt_install python3-django python3-psycopg2
	/usr/bin/python3 -c 'import django, psycopg2' 2>/dev/null || die "Django still missing after apt-get install python3-django python3-psycopg2"
	printf "export RELAY_DJANGO_PYTHON='/usr/bin/python3'\n"
}

cmd_browser() {
	local bin
	bin=$(command -v chromium || command -v chromium-browser || true)
	if [[ -z $bin ]]; then
		apt_install chromium
		bin=$(command -v chromium) || die "chromium still missing after apt-get install chromium"
	fi
	printf "export RELAY_CHROMIUM='%s'\n" "$bin"
}

# The ClickHouse engine of the conformance tests: chDB's libchdb.so from
# the npm package (no build), unpacked once into the user's cache, outside
# the work tree (it is 560 MB).
CHDB_NPM_PACKAGE=@chdb/lib-linux-x64-gnu
CHDB_VERSION=26.5.3

# cmd_chdb makes sure libchdb.so is in the cache (npm pack, then tar) and
# prints its path for the conformance tests.
cmd_chdb() {
	local cache=${XDG_CACHE_HOME:-$HOME/.cache}/outbox-relay/chdb-$CHDB_VERSION
	local lib=$cache/libchdb.so tmp tgz
	if [[ ! -s $lib ]]; then
		[[ $(uname -sm) == "Linux x86_64" ]] || die "$CHDB_NPM_PACKAGE is for Linux x86_64, not $(uname -sm): the conformance tests need another chDB build"
		command -v npm >/dev/null || apt_install npm
		command -v npm >/dev/null || die "npm still missing after apt-get install npm"
		mkdir -p "$cache"
		tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
		log "fetching $CHDB_NPM_PACKAGE@$CHDB_VERSION (about 170 MB, once) into $cache..."
		# npm's own cache (another 166 MB) goes with the temp dir.
		if ! (cd "$tmp" && npm pack --silent --cache "$tmp/npm-cache" "$CHDB_NPM_PACKAGE@$CHDB_VERSION" >/dev/null); then
			rm -rf "$tmp"
			die "npm pack $CHDB_NPM_PACKAGE@$CHDB_VERSION failed (the npm registry must be reachable)"
		fi
		tgz=$(ls "$tmp"/*.tgz)
		if ! tar -xzf "$tgz" -C "$tmp" package/libchdb.so; then
			rm -rf "$tmp"
			die "$tgz has no package/libchdb.so"
		fi
		mv "$tmp/package/libchdb.so" "$lib"
		rm -rf "$tmp"
	fi
	printf "export RELAY_CHDB_LIB='%s'\n" "$lib"
}

main() {
	local cmd=${1:-}
	(($# > 0)) && shift
	case $cmd in
	up) cmd_up ;;
	env)
		need_state
		print_env
		;;
	down) cmd_down "$@" ;;
	status) cmd_status ;;
	browser) cmd_browser ;;
	django) cmd_django ;;
	chdb) cmd_chdb ;;
	start-postgres) cmd_start_one postgres ;;
	start-clickhouse) cmd_start_one clickhouse ;;
	stop-postgres) cmd_stop_one postgres ;;
	stop-clickhouse) cmd_stop_one clickhouse ;;
	cluster-up) cmd_cluster_up ;;
	cluster-env)
		need_cluster
		print_cluster_env
		;;
	cluster-status) cmd_cluster_status ;;
	cluster-down)
		[[ -d $DIR ]] || exit 0
		lock_state
		cmd_cluster_down
		;;
	pg17-up) cmd_pg17_up ;;
	pg17-pair-up) cmd_pg17_pair_up ;;
	pg17-pair-down) cmd_pg17_pair_down "$@" ;;
	pg17-env)
		[[ -n $PG17_PORT ]] || die "PostgreSQL 17 is not set up in $DIR; run: scripts/services.sh pg17-up"
		print_pg17_env
		;;
	pg17-status) cmd_pg17_status ;;
	pg15-pair-up) cmd_pg15_pair_up ;;
	pg15-pair-down)
		[[ -d $DIR ]] || exit 0
		lock_state
		cmd_pg15_pair_down "$@"
		;;
	stop-pg15)
		pg15_name "${1:-}"
		lock_state
		pg15_bind "$1"
		pg15_stop "${2:-}"
		;;
	pg15-psql)
		pg15_name "${1:-}"
		pg15_bind "$1"
		shift
		exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG15_PORT" -U postgres -d relay "$@"
		;;
	stop-pg17)
		pg17_name "${1:-}"
		lock_state
		pg17_bind "$1"
		pg17_stop "${2:-}"
		;;
	start-pg17)
		pg17_name "${1:-}"
		lock_state
		load_ports || true
		pg17_bind "$1"
		pg17_start || die "$1 failed to start (log: $PG17DIR/log/postgresql.log)"
		;;
	pg17-psql)
		pg17_name "${1:-}"
		pg17_bind "$1"
		shift
		exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG17_PORT" -U postgres -d relay "$@"
		;;
	stop-replica | start-replica | stop-zookeeper | start-zookeeper) cmd_cluster_one "$cmd" "$@" ;;
	cluster-ch)
		need_cluster
		node_arg "${1:-}"
		resolve_ch || true
		port=${NODE_TCP[$1]}
		shift
		exec "$CH_CLIENT" --host 127.0.0.1 --port "$port" --database relay "$@"
		;;
	psql)
		need_state
		exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d relay "$@"
		;;
	ch)
		need_state
		resolve_ch || true
		exec "$CH_CLIENT" --host 127.0.0.1 --port "$CH_TCP_PORT" --database relay "$@"
		;;
	-h | --help | help)
		usage
		;;
	*)
		usage
		exit 2
		;;
	esac
}

main "$@"
