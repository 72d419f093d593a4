# shellcheck shell=bash
# Throw-away database engines for tests and demos. Source it, don't run it:
#
#   source scripts/lib/engines.sh
#   lb_ensure_packages
#   trap lb_stop_engines EXIT
#   lb_start_mariadb "$tmp/mariadb"     # exports LB_TEST_MARIADB_ODBC, LB_TEST_MARIADB_PORT
#   lb_start_postgres "$tmp/postgres"   # exports LB_TEST_POSTGRES_ODBC, _PORT, _URL
#   lb_start_nats "$tmp/nats"           # exports LB_TEST_NATS_URL, _PORT, _BIN, _DIR
#   lb_sqlite_driver                    # exports LB_TEST_SQLITE_DRIVER
#   lb_python_env                       # exports LB_TEST_PYTHON
#
# Servers listen on 127.0.0.1 only, on free ports, with all files in the given
# directory; nothing is registered as a system service. Safe under
# `set -euo pipefail`. Functions report errors on stderr and return non-zero.

# Debian packages the test suite needs (tdsodbc and nats-server: FreeTDS ODBC
# driver and NATS server, see DESIGN.md "Testing").
LB_PACKAGES=(
    unixodbc unixodbc-dev libsqliteodbc odbc-mariadb odbc-postgresql tdsodbc
    mariadb-server mariadb-client postgresql postgresql-client sqlite3
    nats-server python3 python3-venv curl
)

# Seconds to wait for a server to accept connections / to stop.
: "${LB_ENGINE_START_TIMEOUT:=60}"
: "${LB_ENGINE_STOP_TIMEOUT:=30}"

# State of what this shell started (used by lb_stop_engines).
_LB_MARIADB_PID=""
_LB_MARIADB_DIR=""
_LB_POSTGRES_DATA=""
_LB_POSTGRES_BIN=""
_LB_NATS_PID=""

_lb_err() { printf 'engines: error: %s\n' "$*" >&2; }
_lb_log() { printf 'engines: %s\n' "$*" >&2; }

# Run a command as root: directly when root, else through sudo.
_lb_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _lb_err "need root (or sudo) to run: $*"
        return 1
    fi
}

# Print the tail of a log file to stderr (for failure diagnostics).
_lb_show_log() {
    if [[ -f $1 ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 25 "$1" >&2 || true
        printf -- '---\n' >&2
    fi
}

# Unix socket paths are limited to 107 bytes.
_lb_check_socket_path() {
    if ((${#1} > 100)); then
        _lb_err "socket path too long (${#1} > 100 bytes): $1 -- use a shorter directory"
        return 1
    fi
}

_lb_pid_alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# Installs the packages in LB_PACKAGES that are not installed yet. Runs
# `apt-get update` once, and only when something has to be installed.
lb_ensure_packages() {
    local missing=() pkg
    if ! command -v dpkg-query >/dev/null 2>&1; then
        _lb_err "dpkg-query not found: lb_ensure_packages supports Debian/Ubuntu only"
        return 1
    fi
    for pkg in "${LB_PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) != installed ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    _lb_log "installing missing packages: ${missing[*]}"
    # Wait (bounded) for another apt/dpkg run to release its lock.
    local apt_opts=(-q -y -o DPkg::Lock::Timeout=300)
    _lb_as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >&2 || {
        _lb_err "apt-get update failed"
        return 1
    }
    _lb_as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" \
        install --no-install-recommends "${missing[@]}" >&2 || {
        _lb_err "apt-get install failed for: ${missing[*]}"
        return 1
    }
}

# lb_odbc_driver NAME_REGEX: prints the first registered ODBC driver whose name
# matches the extended regex, e.g. lb_odbc_driver '^MariaDB'.
lb_odbc_driver() {
    local re=${1:?usage: lb_odbc_driver NAME_REGEX} names name
    if ! command -v odbcinst >/dev/null 2>&1; then
        _lb_err "odbcinst not found (install unixodbc)"
        return 1
    fi
    names=$(odbcinst -q -d 2>/dev/null | sed -n 's/^\[\(.*\)\]$/\1/p') || true
    name=$(grep -E -- "$re" <<<"$names" | head -n 1) || true
    if [[ -z $name ]]; then
        _lb_err "no ODBC driver matching /$re/ is registered (odbcinst -q -d lists: ${names//$'\n'/, })"
        return 1
    fi
    printf '%s\n' "$name"
}

# Exports LB_TEST_SQLITE_DRIVER (the SQLite 3 ODBC driver name) and prints it.
lb_sqlite_driver() {
    LB_TEST_SQLITE_DRIVER=$(lb_odbc_driver '^SQLite3$') || return 1
    export LB_TEST_SQLITE_DRIVER
    printf '%s\n' "$LB_TEST_SQLITE_DRIVER"
}

# Python packages the tests use: standardwebhooks verifies webhook signatures in
# tests/receiver/webhook_receiver.py; openapi-spec-validator checks openapi/v1.json.
LB_PYTHON_PACKAGES=(standardwebhooks openapi-spec-validator)

# Creates (or repairs) the Python venv target/pyvenv (relative to the current
# directory, the repository root) with LB_PYTHON_PACKAGES installed; exports
# LB_TEST_PYTHON (its interpreter, absolute) and prints it.
lb_python_env() {
    local venv=target/pyvenv python
    if ! command -v python3 >/dev/null 2>&1; then
        _lb_err "python3 not found (install python3 and python3-venv)"
        return 1
    fi
    mkdir -p "$(dirname "$venv")" && venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv") || return 1
    python=$venv/bin/python
    # (Re)create the venv when missing or broken (e.g. python3 was upgraded).
    if ! "$python" -c '' >/dev/null 2>&1; then
        _lb_log "creating Python venv $venv"
        python3 -m venv --clear "$venv" >&2 || {
            _lb_err "python3 -m venv failed (install python3-venv)"
            return 1
        }
    fi
    # Module names are the package names with `_` for `-`.
    local pkg missing=()
    for pkg in "${LB_PYTHON_PACKAGES[@]}"; do
        if ! "$python" -c "import ${pkg//-/_}" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} > 0)); then
        _lb_log "installing Python packages: ${missing[*]}"
        "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2 || {
            _lb_err "pip install failed for: ${missing[*]}"
            return 1
        }
    fi
    export LB_TEST_PYTHON=$python
    printf '%s\n' "$LB_TEST_PYTHON"
}

# Prints a TCP port that is free on 127.0.0.1 right now.
lb_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    # Fallback: random high ports until one refuses connections.
    local port tries
    for ((tries = 0; tries < 50; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    _lb_err "no free TCP port found on 127.0.0.1"
    return 1
}

# lb_start_mariadb DIR: starts a throw-away MariaDB server with its data,
# socket and logs in DIR; creates user lb/lb with all privileges.
lb_start_mariadb() {
    local dir=${1:?usage: lb_start_mariadb DIR}
    if _lb_pid_alive "$_LB_MARIADB_PID"; then
        _lb_err "a MariaDB server started by this shell is already running (pid $_LB_MARIADB_PID)"
        return 1
    fi
    local driver install_db mariadbd admin client
    driver=$(lb_odbc_driver '^MariaDB') || return 1
    install_db=$(PATH=$PATH:/usr/sbin:/usr/bin command -v mariadb-install-db) || {
        _lb_err "mariadb-install-db not found (install mariadb-server)"
        return 1
    }
    mariadbd=$(PATH=$PATH:/usr/sbin command -v mariadbd) || {
        _lb_err "mariadbd not found (install mariadb-server)"
        return 1
    }
    if ! admin=$(command -v mariadb-admin) || ! client=$(command -v mariadb); then
        _lb_err "mariadb-admin/mariadb not found (install mariadb-client)"
        return 1
    fi

    mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
    local sock=$dir/mysqld.sock log=$dir/error.log
    _lb_check_socket_path "$sock" || return 1
    local run_as=()
    [[ $EUID -eq 0 ]] && run_as=(--user=root)

    if [[ ! -d $dir/data/mysql ]]; then
        mkdir -p "$dir/data" "$dir/tmp"
        if ! "$install_db" --no-defaults --datadir="$dir/data" "${run_as[@]}" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install.log" 2>&1; then
            _lb_err "mariadb-install-db failed"
            _lb_show_log "$dir/install.log"
            return 1
        fi
    fi

    # A free port can be taken between lb_free_port and bind: retry a few times.
    local attempt port pid ready deadline
    for attempt in 1 2 3; do
        port=$(lb_free_port) || return 1
        : >"$log"
        # Settings favour speed over durability: this server is thrown away.
        "$mariadbd" --no-defaults "${run_as[@]}" \
            --datadir="$dir/data" --tmpdir="$dir/tmp" \
            --socket="$sock" --pid-file="$dir/mariadbd.pid" --log-error="$log" \
            --bind-address=127.0.0.1 --port="$port" --skip-name-resolve \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
            --max-connections=300 --innodb-buffer-pool-size=128M \
            --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 \
            </dev/null >>"$log" 2>&1 &
        pid=$!
        ready=""
        deadline=$((SECONDS + LB_ENGINE_START_TIMEOUT))
        while ((SECONDS < deadline)); do
            _lb_pid_alive "$pid" || break
            if "$admin" --no-defaults --socket="$sock" -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.2
        done
        [[ -n $ready ]] && break
        if _lb_pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            _lb_err "MariaDB did not become ready within ${LB_ENGINE_START_TIMEOUT}s"
            _lb_show_log "$log"
            return 1
        fi
        wait "$pid" 2>/dev/null || true
        if grep -q -i 'address already in use' "$log"; then
            _lb_log "port $port was taken, retrying (attempt $attempt)"
            continue
        fi
        _lb_err "MariaDB exited during start-up"
        _lb_show_log "$log"
        return 1
    done
    if [[ -z $ready ]]; then
        _lb_err "MariaDB could not bind a free port after 3 attempts"
        _lb_show_log "$log"
        return 1
    fi
    _LB_MARIADB_PID=$pid
    _LB_MARIADB_DIR=$dir

    # 'localhost' matches socket connections, '127.0.0.1' TCP ones.
    if ! "$client" --no-defaults --socket="$sock" -uroot --batch >>"$log" 2>&1 <<'SQL'; then
CREATE USER IF NOT EXISTS 'lb'@'127.0.0.1' IDENTIFIED BY 'lb';
CREATE USER IF NOT EXISTS 'lb'@'localhost' IDENTIFIED BY 'lb';
GRANT ALL PRIVILEGES ON *.* TO 'lb'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'lb'@'localhost' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
        _lb_err "could not create MariaDB user lb"
        _lb_show_log "$log"
        return 1
    fi

    export LB_TEST_MARIADB_PORT=$port
    export LB_TEST_MARIADB_ODBC="Driver={$driver};Server=127.0.0.1;Port=$port;User=lb;Password=lb;"
    _lb_log "MariaDB ready on 127.0.0.1:$port (pid $pid, dir $dir)"
}

# Runs a command as the PostgreSQL OS user (PostgreSQL refuses to run as root).
_lb_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# lb_start_postgres DIR: starts a throw-away PostgreSQL cluster with its data,
# socket and log in DIR; creates role lb/lb (LOGIN CREATEDB, not superuser).
lb_start_postgres() {
    local dir=${1:?usage: lb_start_postgres DIR}
    if [[ -n $_LB_POSTGRES_DATA ]]; then
        _lb_err "a PostgreSQL cluster started by this shell is already running ($_LB_POSTGRES_DATA)"
        return 1
    fi
    local driver bin
    driver=$(lb_odbc_driver '^PostgreSQL Unicode') || return 1
    # Newest installed server version; not /usr/local/bin (may be something else).
    bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -z $bin || ! -x $bin/initdb || ! -x $bin/pg_ctl ]]; then
        _lb_err "no PostgreSQL server found under /usr/lib/postgresql/*/bin (install postgresql)"
        return 1
    fi
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        _lb_err "OS user 'postgres' does not exist (install postgresql)"
        return 1
    fi

    mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
    local data=$dir/data log=$dir/postgres.log
    _lb_check_socket_path "$dir/.s.PGSQL.65535" || return 1
    if [[ $EUID -eq 0 ]]; then
        chown postgres: "$dir"
        chmod 700 "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            _lb_err "OS user postgres cannot write $dir: make its parent directories traversable (chmod o+x)"
            return 1
        fi
    fi

    if [[ ! -f $data/PG_VERSION ]]; then
        if ! _lb_as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
            _lb_err "initdb failed"
            _lb_show_log "$dir/initdb.log"
            return 1
        fi
        # Settings favour speed over durability: this cluster is thrown away.
        _lb_as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF

# --- legacy-bridge throw-away test cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    fi

    local attempt port
    for attempt in 1 2 3; do
        port=$(lb_free_port) || return 1
        # -w -t: pg_ctl itself bounds the wait for start-up.
        if _lb_as_pg "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" \
            -w -t "$LB_ENGINE_START_TIMEOUT" start >>"$dir/pg_ctl.log" 2>&1; then
            break
        fi
        # pg_ctl may time out while the server still runs: stop it.
        _lb_as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
        if grep -q -i 'could not bind\|address already in use' "$log" 2>/dev/null && ((attempt < 3)); then
            _lb_log "port $port was taken, retrying (attempt $attempt)"
            continue
        fi
        _lb_err "PostgreSQL failed to start"
        _lb_show_log "$dir/pg_ctl.log"
        _lb_show_log "$log"
        return 1
    done
    _LB_POSTGRES_DATA=$data
    _LB_POSTGRES_BIN=$bin

    if ! "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE ROLE lb LOGIN PASSWORD 'lb' CREATEDB NOSUPERUSER" >>"$log" 2>&1; then
        _lb_err "could not create PostgreSQL role lb"
        _lb_show_log "$log"
        return 1
    fi

    export LB_TEST_POSTGRES_PORT=$port
    export LB_TEST_POSTGRES_ODBC="Driver={$driver};Server=127.0.0.1;Port=$port;Uid=lb;Pwd=lb;"
    export LB_TEST_POSTGRES_URL="postgres://lb:lb@127.0.0.1:$port/postgres"
    _lb_log "PostgreSQL ready on 127.0.0.1:$port (dir $dir)"
}

# lb_start_nats DIR: starts a throw-away NATS server with JetStream, its store
# (DIR/js) and log in DIR. Exports LB_TEST_NATS_URL, LB_TEST_NATS_PORT, and, so
# a test can stop and restart a server of its own ("NATS restarted
# mid-stream"), LB_TEST_NATS_BIN (the nats-server binary) and LB_TEST_NATS_DIR.
lb_start_nats() {
    local dir=${1:?usage: lb_start_nats DIR}
    if _lb_pid_alive "$_LB_NATS_PID"; then
        _lb_err "a NATS server started by this shell is already running (pid $_LB_NATS_PID)"
        return 1
    fi
    local bin
    bin=$(PATH=$PATH:/usr/sbin:/usr/bin command -v nats-server) || {
        _lb_err "nats-server not found (install nats-server)"
        return 1
    }
    mkdir -p "$dir/js" && dir=$(cd "$dir" && pwd) || return 1
    local log=$dir/nats.log

    # A free port can be taken between lb_free_port and bind: retry a few times.
    local attempt port pid ready deadline
    for attempt in 1 2 3; do
        port=$(lb_free_port) || return 1
        : >"$log"
        "$bin" -js -sd "$dir/js" -a 127.0.0.1 -p "$port" \
            </dev/null >>"$log" 2>&1 &
        pid=$!
        ready=""
        deadline=$((SECONDS + LB_ENGINE_START_TIMEOUT))
        while ((SECONDS < deadline)); do
            _lb_pid_alive "$pid" || break
            if grep -q 'Server is ready' "$log" 2>/dev/null; then
                ready=1
                break
            fi
            sleep 0.1
        done
        [[ -n $ready ]] && break
        if _lb_pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            _lb_err "NATS did not become ready within ${LB_ENGINE_START_TIMEOUT}s"
            _lb_show_log "$log"
            return 1
        fi
        wait "$pid" 2>/dev/null || true
        if grep -q -i 'address already in use' "$log"; then
            _lb_log "port $port was taken, retrying (attempt $attempt)"
            continue
        fi
        _lb_err "NATS exited during start-up"
        _lb_show_log "$log"
        return 1
    done
    if [[ -z $ready ]]; then
        _lb_err "NATS could not bind a free port after 3 attempts"
        _lb_show_log "$log"
        return 1
    fi
    _LB_NATS_PID=$pid

    export LB_TEST_NATS_PORT=$port
    export LB_TEST_NATS_URL="nats://127.0.0.1:$port"
    export LB_TEST_NATS_BIN=$bin
    export LB_TEST_NATS_DIR=$dir
    _lb_log "NATS (JetStream) ready on 127.0.0.1:$port (pid $pid, dir $dir)"
}

# Stops whatever lb_start_* started in this shell. Idempotent, never fails
# (meant for `trap lb_stop_engines EXIT`), every wait bounded.
lb_stop_engines() {
    local deadline
    if [[ -n $_LB_MARIADB_PID ]]; then
        if _lb_pid_alive "$_LB_MARIADB_PID"; then
            kill -TERM "$_LB_MARIADB_PID" 2>/dev/null || true
            deadline=$((SECONDS + LB_ENGINE_STOP_TIMEOUT))
            while ((SECONDS < deadline)); do
                _lb_pid_alive "$_LB_MARIADB_PID" || break
                sleep 0.2
            done
            if _lb_pid_alive "$_LB_MARIADB_PID"; then
                _lb_log "MariaDB did not stop within ${LB_ENGINE_STOP_TIMEOUT}s, killing it"
                kill -KILL "$_LB_MARIADB_PID" 2>/dev/null || true
            fi
            wait "$_LB_MARIADB_PID" 2>/dev/null || true
        fi
        _lb_log "MariaDB stopped"
        _LB_MARIADB_PID=""
        _LB_MARIADB_DIR=""
    fi
    if [[ -n $_LB_POSTGRES_DATA ]]; then
        if [[ -f $_LB_POSTGRES_DATA/postmaster.pid ]] &&
            ! _lb_as_pg "$_LB_POSTGRES_BIN/pg_ctl" -D "$_LB_POSTGRES_DATA" -m fast \
                -w -t "$LB_ENGINE_STOP_TIMEOUT" stop >/dev/null 2>&1; then
            local pgpid
            pgpid=$(head -n 1 "$_LB_POSTGRES_DATA/postmaster.pid" 2>/dev/null || true)
            if [[ $pgpid =~ ^[0-9]+$ ]] && _lb_pid_alive "$pgpid"; then
                _lb_log "PostgreSQL did not stop within ${LB_ENGINE_STOP_TIMEOUT}s, killing it"
                kill -KILL "$pgpid" 2>/dev/null || true
            fi
        fi
        _lb_log "PostgreSQL stopped"
        _LB_POSTGRES_DATA=""
        _LB_POSTGRES_BIN=""
    fi
    if [[ -n $_LB_NATS_PID ]]; then
        if _lb_pid_alive "$_LB_NATS_PID"; then
            kill -TERM "$_LB_NATS_PID" 2>/dev/null || true
            deadline=$((SECONDS + LB_ENGINE_STOP_TIMEOUT))
            while ((SECONDS < deadline)); do
                _lb_pid_alive "$_LB_NATS_PID" || break
                sleep 0.1
            done
            if _lb_pid_alive "$_LB_NATS_PID"; then
                _lb_log "NATS did not stop within ${LB_ENGINE_STOP_TIMEOUT}s, killing it"
                kill -KILL "$_LB_NATS_PID" 2>/dev/null || true
            fi
            wait "$_LB_NATS_PID" 2>/dev/null || true
        fi
        _lb_log "NATS stopped"
        _LB_NATS_PID=""
    fi
    return 0
}
