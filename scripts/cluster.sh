#!/usr/bin/env bash
# Start, stop or inspect the 3-server pseudo-cluster of conf/zoo1.cfg..zoo3.cfg.
#   scripts/cluster.sh start | stop | status
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-status}
for i in 1 2 3; do
  data="data/zk$i"
  pidfile="$data/zkpy.pid"
  case "$cmd" in
    start)
      mkdir -p "$data"
      [ -f "$data/myid" ] || echo "$i" > "$data/myid"
      if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "server $i already running (pid $(cat "$pidfile"))"; continue
      fi
      nohup zkpy-server start "conf/zoo$i.cfg" > "$data/server.log" 2>&1 &
      echo $! > "$pidfile"
      echo "server $i started (pid $!, log $data/server.log)"
      ;;
    stop)
      if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then echo "server $i stopped"; fi
      rm -f "$pidfile"
      ;;
    status)
      mode=$( (exec 3<>/dev/tcp/127.0.0.1/218$i && printf srvr >&3 && cat <&3) 2>/dev/null | grep '^Mode' || true)
      echo "server $i (client port 218$i): ${mode:-not serving}"
      ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
  esac
done
