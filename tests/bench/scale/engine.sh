# shellcheck shell=bash
# The engine configuration of the scale, storm and soak benchmarks, sourced
# by their scripts after tests/bench/lib/common.sh.
#
# scale_engine_common: the default detectors (heartbeat, health_probe,
# metrics) and the log plugin, heartbeats every 500 ms, `fault_tolerance`
# last (a caller may add to it). One load generator multiplexes the whole
# fleet on a few HTTP/2 connections (h2c: tests/bench/lib/h2c.h),
# so the edge's per-connection budgets are scaled to the agents behind it and
# an abuse cut does not block the fleet's only address: a stream reset per
# heartbeat that times out would otherwise cut it after 20 (docs/security.md,
# "HTTP edge"). HB_INPUT_LAG_MAX, when set, is the heartbeat detector's
# input_lag_max (0ms: silence judged up to now, as before it existed).
scale_engine_common() {
    local hb_config=""
    if [ -n "${HB_INPUT_LAG_MAX:-}" ]; then
        hb_config="
      config:
        input_lag_max: $HB_INPUT_LAG_MAX"
    fi
    cat <<YAML
server:
  edge:
    stream_reset_budget: 100000
    abuse_block: 0s
plugins:
  instances:
    - name: heartbeat
      required: true$hb_config
    - name: health_probe
    - name: metrics
    - name: log
fault_tolerance:
  detection:
    heartbeat_interval: 500ms
    health_check_timeout: 1s
    failure_threshold: 3
    recovery_threshold: 2
YAML
}

# scale_engine_yaml FILE RAFT_PORT: one recoveryd, warnings logged.
scale_engine_yaml() {
    {
        printf 'cluster:\n  raft_address: 127.0.0.1:%s\nlogging:\n  level: warn\n' "$2"
        scale_engine_common
    } >"$1"
}
