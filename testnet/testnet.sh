#!/usr/bin/env bash
# testnet.sh runs a local ordo network of N validators on loopback, each an
# `ordo node` process with its home in DIR/nodeI. It needs only Go and bash.
# Run `testnet.sh --help` for the commands.
set -euo pipefail

# Bounds, in seconds.
readonly READY_TIMEOUT_S=60     # a node must answer /v1/status within this after start
readonly STOP_TIMEOUT_S=30      # a node must exit within this after SIGTERM
readonly KILL_TIMEOUT_S=10      # a node must be gone within this after SIGKILL
readonly CONVERGE_TIMEOUT_S=20  # demo: nodes must agree on the executed seq within this
readonly STATUS_ATTEMPT_S=2     # one `ordo status` attempt
readonly LOG_TAIL_LINES=20      # how much of a failed node's log is shown
readonly NODES_MAX=64           # ports P..P+N-1 and P+100..P+100+N-1 must not overlap

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT

usage() {
  cat <<'EOF'
testnet.sh: a local ordo network on 127.0.0.1

usage:
  testnet.sh up     [--nodes N] [--dir DIR] [--base-port P]   start the network (created on first use)
  testnet.sh demo   [--nodes N] [--dir DIR] [--base-port P]   up, then a short guided workload
  testnet.sh status [--dir DIR]                               one line per node
  testnet.sh kill   I [--dir DIR]                             SIGKILL node I (0-based)
  testnet.sh start  I [--dir DIR]                             restart node I on its data
  testnet.sh wipe   I [--dir DIR]                             kill node I and delete its data
  testnet.sh down   [--dir DIR]                               stop every node (SIGTERM), keep data

defaults: N=4, DIR=./.testnet, P=7700. Node I serves its HTTP API at
http://127.0.0.1:$((P+I)) and libp2p at port P+100+I. DIR holds genesis.json,
client.key (a client the network admits), nodes.json and nodeI/ (key, genesis,
data/, node.log). N and P are remembered in DIR/testnet.env, so later commands
need only --dir. `up` is safe to run twice: running nodes are left alone.
EOF
}

die() {
  echo "testnet.sh: $*" >&2
  exit 1
}

# ---- arguments ---------------------------------------------------------------

CMD=""
INDEX=""
OPT_NODES=""
OPT_PORT=""
DIR="./.testnet"

parse_args() {
  [[ $# -gt 0 ]] || { usage; exit 1; }
  local a
  for a in "$@"; do
    if [[ $a == "--help" || $a == "-h" || $a == "help" ]]; then
      usage
      exit 0
    fi
  done
  CMD="$1"
  shift
  case "$CMD" in
    up | demo | status | down | kill | start | wipe) ;;
    *) die "unknown command '$CMD' (see testnet.sh --help)" ;;
  esac
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --nodes | --dir | --base-port)
        [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"
        case "$1" in
          --nodes) OPT_NODES="$2" ;;
          --dir) DIR="$2" ;;
          --base-port) OPT_PORT="$2" ;;
        esac
        shift 2
        ;;
      --nodes=* ) OPT_NODES="${1#*=}"; shift ;;
      --dir=* ) DIR="${1#*=}"; shift ;;
      --base-port=* ) OPT_PORT="${1#*=}"; shift ;;
      -*) die "unknown flag '$1' for $CMD (see testnet.sh --help)" ;;
      *)
        [[ -z $INDEX ]] || die "unexpected argument '$1'"
        INDEX="$1"
        shift
        ;;
    esac
  done
  case "$CMD" in
    kill | start | wipe)
      [[ -n $INDEX ]] || die "$CMD needs a node index, e.g. testnet.sh $CMD 0"
      [[ $INDEX =~ ^[0-9]+$ ]] || die "node index '$INDEX' is not a number"
      ;;
    *) [[ -z $INDEX ]] || die "$CMD takes no node index (got '$INDEX')" ;;
  esac
  case "$CMD" in
    up | demo) ;;
    *) [[ -z $OPT_NODES && -z $OPT_PORT ]] || die "--nodes and --base-port are for up and demo; $CMD reads them from DIR/testnet.env" ;;
  esac
  if [[ -n $OPT_NODES ]]; then
    if ! [[ $OPT_NODES =~ ^[0-9]+$ ]] || ((OPT_NODES < 1 || OPT_NODES > NODES_MAX)); then
      die "--nodes '$OPT_NODES': want 1..$NODES_MAX"
    fi
  fi
  if [[ -n $OPT_PORT ]]; then
    if ! [[ $OPT_PORT =~ ^[0-9]+$ ]] || ((OPT_PORT < 1024 || OPT_PORT + 100 + NODES_MAX > 65535)); then
      die "--base-port '$OPT_PORT': want 1024..$((65535 - 100 - NODES_MAX))"
    fi
  fi
}

# ---- the network's layout ----------------------------------------------------

NODES=""
BASE_PORT=""
ORDO=""

home_of() { echo "$DIR/node$1"; }
api_of() { echo "http://127.0.0.1:$((BASE_PORT + $1))"; }
api_listen_of() { echo "127.0.0.1:$((BASE_PORT + $1))"; }
p2p_of() { echo "/ip4/127.0.0.1/tcp/$((BASE_PORT + 100 + $1))"; }

# load_env reads N and P from DIR/testnet.env (our own key=value file).
load_env() {
  local f="$DIR/testnet.env" k v
  [[ -f $f ]] || return 1
  while IFS='=' read -r k v; do
    case "$k" in
      NODES) NODES="$v" ;;
      BASE_PORT) BASE_PORT="$v" ;;
    esac
  done <"$f"
  [[ $NODES =~ ^[0-9]+$ && $BASE_PORT =~ ^[0-9]+$ ]] || die "$f is damaged; remove $DIR and run up again"
}

# need_env is for commands on an existing network.
need_env() {
  [[ -d $DIR ]] || die "no testnet in $DIR (run testnet.sh up first)"
  DIR="$(cd "$DIR" && pwd)"
  load_env || die "no testnet in $DIR (run testnet.sh up first)"
  ORDO="$DIR/bin/ordo"
}

need_index() {
  ((INDEX < NODES)) || die "node $INDEX does not exist: the testnet in $DIR has nodes 0..$((NODES - 1))"
}

# build compiles ordo into DIR/bin/ordo. It installs by rename, so nodes
# still running the previous binary are not disturbed.
build() {
  command -v go >/dev/null 2>&1 || die "go is not installed or not on PATH"
  mkdir -p "$DIR/bin"
  echo "building ordo into $DIR/bin/ordo"
  (cd "$REPO_ROOT" && go build -o "$DIR/bin/ordo.new" ./cmd/ordo) || die "go build ./cmd/ordo failed"
  mv -f "$DIR/bin/ordo.new" "$DIR/bin/ordo"
  ORDO="$DIR/bin/ordo"
}

need_binary() {
  [[ -x $ORDO ]] || build
}

# ---- processes -----------------------------------------------------------------

pid_of() {
  local f
  f="$(home_of "$1")/pid"
  if [[ -f $f ]]; then cat "$f"; fi
}

# alive reports whether pid is a running `ordo node` (not a zombie, not an
# unrelated process that reused the pid).
alive() {
  local pid="$1" cmdline
  [[ -n $pid ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ $cmdline == *" node --home "* ]] || return 1
  fi
  return 0
}

node_alive() { alive "$(pid_of "$1")"; }

show_log() {
  local log
  log="$(home_of "$1")/node.log"
  if [[ -f $log ]]; then
    echo "---- last $LOG_TAIL_LINES lines of $log" >&2
    tail -n "$LOG_TAIL_LINES" "$log" >&2
    echo "----" >&2
  fi
}

start_node() {
  local i="$1" home pid
  home="$(home_of "$i")"
  if node_alive "$i"; then
    echo "node$i already running (pid $(pid_of "$i"))"
    return 0
  fi
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$ORDO" node --home "$home" --api "$(api_listen_of "$i")" --p2p "$(p2p_of "$i")" \
      >>"$home/node.log" 2>&1 </dev/null &
  else
    nohup "$ORDO" node --home "$home" --api "$(api_listen_of "$i")" --p2p "$(p2p_of "$i")" \
      >>"$home/node.log" 2>&1 </dev/null &
  fi
  pid=$!
  echo "$pid" >"$home/pid"
  echo "started node$i (pid $pid, api $(api_of "$i"), log $home/node.log)"
}

# status_json prints node i's /v1/status, failing quietly if it does not answer.
status_json() {
  "$ORDO" status --node "$(api_of "$1")" --timeout "${STATUS_ATTEMPT_S}s" 2>/dev/null
}

# wait_ready waits until every listed node answers /v1/status.
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT_S)) i pending
  while :; do
    pending=()
    for i in "$@"; do
      if ! node_alive "$i"; then
        show_log "$i"
        die "node$i exited during start-up (log above)"
      fi
      status_json "$i" >/dev/null || pending+=("$i")
    done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      for i in "${pending[@]}"; do show_log "$i"; done
      die "node(s) ${pending[*]} did not answer /v1/status within ${READY_TIMEOUT_S}s (logs above)"
    fi
    sleep 0.2
  done
}

# stop_pid sends sig to pid and waits up to limit seconds for it to be gone.
stop_pid() {
  local pid="$1" sig="$2" limit="$3" deadline
  deadline=$((SECONDS + limit))
  kill "-$sig" "$pid" 2>/dev/null || true
  while alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

kill_node() {
  local i="$1" pid
  pid="$(pid_of "$i")"
  if ! alive "$pid"; then
    echo "node$i is not running"
    return 0
  fi
  stop_pid "$pid" KILL "$KILL_TIMEOUT_S" || die "node$i (pid $pid) still runs ${KILL_TIMEOUT_S}s after SIGKILL"
  echo "killed node$i (pid $pid) with SIGKILL"
}

write_nodes_json() {
  local i sep="" peer pid
  {
    printf '['
    for ((i = 0; i < NODES; i++)); do
      peer="$(cat "$(home_of "$i")/peer_id")"
      pid="$(pid_of "$i")"
      printf '%s\n  {"name":"node%d","api":"%s","peer_id":"%s","pid":%s}' "$sep" "$i" "$(api_of "$i")" "$peer" "${pid:-0}"
      sep=","
    done
    printf '\n]\n'
  } >"$DIR/nodes.json.new"
  mv -f "$DIR/nodes.json.new" "$DIR/nodes.json"
}

# ---- JSON fields without jq: our own CLI prints flat, compact objects ----------

json_num() {
  local re="\"$2\":(-?[0-9]+)"
  [[ $1 =~ $re ]] && echo "${BASH_REMATCH[1]}" || echo "?"
}

json_str() {
  local re="\"$2\":\"([^\"]*)\""
  [[ $1 =~ $re ]] && echo "${BASH_REMATCH[1]}" || echo "?"
}

# ---- commands ------------------------------------------------------------------

# create makes keys and the genesis on first use.
create() {
  local i home out vals="" addrs="" sep=""
  echo "creating a $NODES-validator testnet in $DIR"
  for ((i = 0; i < NODES; i++)); do
    home="$(home_of "$i")"
    mkdir -p "$home"
    if [[ ! -f $home/node.key ]]; then
      out="$("$ORDO" keygen --out "$home/node.key")" || die "keygen for node$i failed"
      json_str "$out" peer_id >"$home/peer_id"
    fi
    [[ -s $home/peer_id ]] || die "$home is incomplete (node.key without peer_id); remove $DIR and run up again"
    vals+="$sep$home/node.key"
    addrs+="$sep$(p2p_of "$i")"
    sep=","
  done
  if [[ ! -f $DIR/client.key ]]; then
    "$ORDO" keygen --out "$DIR/client.key" >/dev/null || die "keygen for the client failed"
  fi
  "$ORDO" genesis --validators "$vals" --p2p-addrs "$addrs" --open --out "$DIR/genesis.json.new" >/dev/null ||
    die "writing the genesis failed"
  for ((i = 0; i < NODES; i++)); do
    cp "$DIR/genesis.json.new" "$(home_of "$i")/genesis.json"
  done
  mv -f "$DIR/genesis.json.new" "$DIR/genesis.json"
  printf 'NODES=%s\nBASE_PORT=%s\n' "$NODES" "$BASE_PORT" >"$DIR/testnet.env"
}

cmd_up() {
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  if load_env; then
    [[ -z $OPT_NODES || $OPT_NODES == "$NODES" ]] ||
      die "the testnet in $DIR has $NODES nodes; remove $DIR to make one with $OPT_NODES"
    [[ -z $OPT_PORT || $OPT_PORT == "$BASE_PORT" ]] ||
      die "the testnet in $DIR uses base port $BASE_PORT (fixed in its genesis); remove $DIR to change it"
  else
    NODES="${OPT_NODES:-4}"
    BASE_PORT="${OPT_PORT:-7700}"
  fi
  build
  [[ -f $DIR/genesis.json && -f $DIR/testnet.env ]] || create
  local i
  for ((i = 0; i < NODES; i++)); do
    [[ -f $(home_of "$i")/genesis.json ]] || cp "$DIR/genesis.json" "$(home_of "$i")/genesis.json"
    start_node "$i"
  done
  write_nodes_json
  echo "waiting for $NODES nodes to answer (at most ${READY_TIMEOUT_S}s)"
  local all=()
  for ((i = 0; i < NODES; i++)); do all+=("$i"); done
  wait_ready "${all[@]}"
  echo "testnet up: $NODES validators, APIs $(api_of 0) .. $(api_of $((NODES - 1))), dashboard $(api_of 0)/"
}

cmd_status() {
  need_env
  need_binary
  local i pid st state
  for ((i = 0; i < NODES; i++)); do
    pid="$(pid_of "$i")"
    if ! alive "$pid"; then
      printf 'node%-3d %-24s pid %-7s stopped\n' "$i" "$(api_of "$i")" "${pid:--}"
      continue
    fi
    if ! st="$(status_json "$i")"; then
      printf 'node%-3d %-24s pid %-7s running, not answering\n' "$i" "$(api_of "$i")" "$pid"
      continue
    fi
    state="committed $(json_num "$st" committed_seq)  executed $(json_num "$st" executed_seq)"
    state+="  view $(json_num "$st" view)  primary $(json_num "$st" primary)  peers $(json_num "$st" peers_connected)"
    printf 'node%-3d %-24s pid %-7s running  %s\n' "$i" "$(api_of "$i")" "$pid" "$state"
  done
}

cmd_kill() {
  need_env
  need_index
  kill_node "$INDEX"
}

cmd_start() {
  need_env
  need_index
  need_binary
  start_node "$INDEX"
  write_nodes_json
  wait_ready "$INDEX"
  echo "node$INDEX answers at $(api_of "$INDEX")"
}

cmd_wipe() {
  need_env
  need_index
  kill_node "$INDEX"
  rm -rf "$(home_of "$INDEX")/data"
  echo "wiped node$INDEX's data ($(home_of "$INDEX")/data); key and genesis kept; run: testnet.sh start $INDEX --dir $DIR"
}

cmd_down() {
  need_env
  local i pid failed=() signalled=()
  # Signal every node first, then wait: they shut down in parallel.
  for ((i = 0; i < NODES; i++)); do
    pid="$(pid_of "$i")"
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      signalled+=("$i")
    fi
  done
  for i in "${signalled[@]}"; do
    pid="$(pid_of "$i")"
    if stop_pid "$pid" TERM "$STOP_TIMEOUT_S"; then
      echo "stopped node$i"
    else
      stop_pid "$pid" KILL "$KILL_TIMEOUT_S" || true
      failed+=("$i")
    fi
  done
  ((${#failed[@]} == 0)) || die "node(s) ${failed[*]} did not stop within ${STOP_TIMEOUT_S}s of SIGTERM and were killed (see their node.log)"
  echo "testnet down; data kept in $DIR"
}

# ---- demo ----------------------------------------------------------------------

# Each demo step is a function; later features add theirs to DEMO_STEPS.
DEMO_STEPS=(demo_events demo_idempotent demo_wrong_version demo_reads demo_ledger demo_projections demo_status demo_next)

say() { printf '\n== %s\n' "$*"; }

# show prints an ordo command line the way a user would type it: DIR as
# $DIR, and arguments with shell characters in single quotes.
show() {
  local a shown="ordo"
  for a in "$@"; do
    a="${a//"$DIR"/\$DIR}"
    if [[ $a =~ ^[A-Za-z0-9_./:@$,=-]+$ ]]; then
      shown+=" $a"
    else
      shown+=" '$a'"
    fi
  done
  echo "   \$ $shown"
}

# ordo_shown shows an ordo command and runs it.
ordo_shown() {
  show "$@"
  "$ORDO" "$@"
}

# demo_append appends through node $1; the rest are `ordo append` flags.
demo_append() {
  local node="$1"
  shift
  "$ORDO" append --node "$(api_of "$node")" --key "$DIR/client.key" "$@"
}

demo_events() {
  say "appending 20 events to 3 streams, round-robin through the $NODES nodes"
  echo "   each reply is checked by the client: f+1 validators signed the result's Merkle root"
  local i node stream out streams=(demo-orders demo-users demo-payments) types=(order-placed user-registered payment-made)
  show append --node "$(api_of 0)" --key "$DIR/client.key" --stream "${streams[0]}" --type "${types[0]}" --data '{"n":0}'
  for ((i = 0; i < 20; i++)); do
    node=$((i % NODES))
    stream="${streams[$((i % 3))]}"
    out="$(demo_append "$node" --stream "$stream" --type "${types[$((i % 3))]}" --data "{\"n\":$i}")" ||
      die "append $i through node$node failed"
    printf '   node%d  %-14s -> %s\n' "$node" "$stream" "$out"
  done
}

demo_idempotent() {
  say "an idempotent retry: the same event id twice returns the same position"
  local id first second
  id="$(printf '%08x-%04x-4%03x-8%03x-%012x' $((RANDOM * RANDOM)) $RANDOM $((RANDOM % 4096)) $((RANDOM % 4096)) $((RANDOM * RANDOM * RANDOM)))"
  show append --node "$(api_of 0)" --key "$DIR/client.key" --stream demo-orders --type retried --data '{"retry":true}' --id "$id"
  first="$(demo_append 0 --stream demo-orders --type retried --data '{"retry":true}' --id "$id")" ||
    die "the first append with id $id failed"
  echo "   $first"
  show append --node "$(api_of $((1 % NODES)))" "..." --id "$id"
  second="$(demo_append $((1 % NODES)) --stream demo-orders --type retried --data '{"retry":true}' --id "$id")" ||
    die "the retry with id $id failed"
  echo "   $second"
  [[ $(json_str "$first" id) == "$id" && ${first%%\]*} == "${second%%\]*}" ]] ||
    die "the retry did not return the original positions"
  echo "   same positions: the event was stored once"
}

demo_wrong_version() {
  say "optimistic concurrency: appending with --expected-version no_stream to a stream that exists"
  local out
  show append --node "$(api_of 0)" "..." --stream demo-orders --expected-version no_stream
  if out="$(demo_append 0 --stream demo-orders --type t --data '{}' --expected-version no_stream 2>&1)"; then
    die "an append expecting no stream succeeded on an existing stream: $out"
  fi
  echo "   refused as expected: $out"
}

demo_reads() {
  say "reading a stream (first 5 events of demo-users)"
  ordo_shown read --node "$(api_of 0)" --stream demo-users --limit 5
  say "reading the whole log, \$all (first 5 events)"
  ordo_shown read --node "$(api_of $((NODES - 1)))" --all --limit 5
}

# ledger_shown shows and runs a ledger command through node $1 (the rest are
# its arguments, without --node and --key); it prints the JSON result and
# keeps it in LAST_RESULT. A refused operation is not fatal here: the demo
# shows refusals on purpose.
ledger_shown() {
  local node="$1"
  shift
  show "$@" --node "$(api_of "$node")" --key "$DIR/client.key"
  LAST_RESULT="$("$ORDO" "$@" --node "$(api_of "$node")" --key "$DIR/client.key" 2>&1)" || true
  printf '%s\n' "$LAST_RESULT" | sed 's/^/   /'
}

demo_ledger() {
  say "double-entry accounting: accounts, a transfer, its retry, a refusal, a pending transfer"
  echo "   (re-running the demo answers \"exists\": every id is applied at most once)"
  ledger_shown 0 account create --id bank --code 978
  ledger_shown $((1 % NODES)) account create --id alice --code 978 --flags debits_must_not_exceed_credits
  ledger_shown $((2 % NODES)) account create --id bob --code 978 --flags debits_must_not_exceed_credits
  ledger_shown 0 transfer --id t1 --from bank --to alice --amount 100 --code 978
  echo "   the same transfer again (a client retry): nothing moves twice"
  ledger_shown $((1 % NODES)) transfer --id t1 --from bank --to alice --amount 100 --code 978
  echo "   alice may not spend more than she holds (her account has debits_must_not_exceed_credits):"
  ledger_shown $((2 % NODES)) transfer --id t2 --from alice --to bob --amount 250 --code 978
  ledger_shown 0 transfer --id hold-1 --from alice --to bob --amount 60 --code 978 --pending --timeout 10m
  ledger_shown $((3 % NODES)) transfer post --id settle-1 --pending-id hold-1 --amount 45
  local pos
  pos="$(json_num "$LAST_RESULT" position)"
  [[ $pos =~ ^[0-9]+$ && $pos -gt 0 ]] || pos=1
  say "balances, read from another node once its projection has applied position $pos (read-your-writes)"
  ordo_shown query --node "$(api_of $((NODES - 1)))" balances alice --min-position "$pos"
  ordo_shown query --node "$(api_of $((NODES - 1)))" balances bob --min-position "$pos"
}

demo_projections() {
  say "projections: read models the nodes keep up to date from the log"
  ordo_shown query --node "$(api_of 0)" streams demo-orders
  ordo_shown query --node "$(api_of 0)" event-types --limit 4
}

demo_status() {
  say "every node executed the same entries"
  local deadline=$((SECONDS + CONVERGE_TIMEOUT_S)) i st seqs first same
  while :; do
    seqs=()
    same=1
    for ((i = 0; i < NODES; i++)); do
      st="$(status_json "$i")" || st=""
      seqs+=("$(json_num "$st" executed_seq)")
    done
    first="${seqs[0]}"
    for i in "${seqs[@]}"; do [[ $i == "$first" && $i != "?" ]] || same=0; done
    ((same == 1 || SECONDS >= deadline)) && break
    sleep 0.2
  done
  cmd_status
  ((same == 1)) || echo "   note: the nodes did not agree within ${CONVERGE_TIMEOUT_S}s (executed seqs: ${seqs[*]})"
}

demo_next() {
  local d="$DIR" p="$BASE_PORT"
  say "the network keeps running. Next:"
  cat <<EOF
   dashboard:       http://127.0.0.1:$p/
   status:          testnet/testnet.sh status --dir $d
   follow the log:  $d/bin/ordo read --node http://127.0.0.1:$p --all --follow
   crash a node:    testnet/testnet.sh kill 3 --dir $d     (the other $((NODES - 1)) keep committing)
   restart it:      testnet/testnet.sh start 3 --dir $d    (it catches up from its peers)
   lose its disk:   testnet/testnet.sh wipe 3 --dir $d && testnet/testnet.sh start 3 --dir $d
   verify a node:   $d/bin/ordo verify --node http://127.0.0.1:$p --genesis $d/genesis.json
   stop all:        testnet/testnet.sh down --dir $d
EOF
}

cmd_demo() {
  cmd_up
  local step
  for step in "${DEMO_STEPS[@]}"; do
    "$step"
  done
}

main() {
  parse_args "$@"
  case "$CMD" in
    up) cmd_up ;;
    demo) cmd_demo ;;
    status) cmd_status ;;
    kill) cmd_kill ;;
    start) cmd_start ;;
    wipe) cmd_wipe ;;
    down) cmd_down ;;
  esac
}

main "$@"
