-- select.lua: picks the recovery strategy for one event.
--
-- The rules, first match wins:
--   1. a suspected network partition         -> degraded_service
--      (mass reassignment would cascade: DESIGN.md decision 6)
--   2. data corruption, or a task whose last
--      checkpoint failed its checksum         -> safe_recovery
--   3. a strategy the operator requested      -> that strategy
--   4. a crash of a node running critical
--      tasks                                  -> safe_recovery
--   5. a hang or a network fault (the process
--      may still be running: wait out its
--      lease before moving its tasks)         -> safe_recovery
--   6. anything else (a crash without critical
--      tasks, a node that left or drained)     -> fast_recovery
-- A request never overrides rules 1 and 2: those protect against split brain
-- and against resuming from a corrupt checkpoint.
--
-- Three hooks (policies/README.md, "Hooks"):
--   predicted  a trend says a working agent will fail: "drain" it now, so its
--              tasks move with their checkpoints while it still runs (the
--              engine rate-limits drains and keeps a minimum of healthy
--              capacity), unless a partition is suspected ("watch").
--   rebalance  the scheduler proposes moves toward spare capacity: queued
--              tasks may always move; running ones only when not critical,
--              of priority LOW_PRIORITY or below, and with a checkpoint to
--              resume from.
--   on_conflict  availability mode: an agent cut off from the majority kept
--              running and replayed writes of an attempt that was moved
--              meanwhile: "keep_progress" (a newer checkpoint becomes the
--              task's and it resumes from it; a result completes it).

local M = { name = "select" }

local function any_task(tasks, pred)
  for _, task in ipairs(tasks or {}) do
    if pred(task) then
      return true
    end
  end
  return false
end

local function bad_checkpoint(task)
  return task.checkpoint ~= nil and task.checkpoint.checksum_ok == false
end

local function critical(task)
  return task.critical == true
end

function M.select(event, view)
  local fault_type = event.fault and event.fault.fault_type
  if view.partition_suspected then
    return "degraded_service"
  end
  if fault_type == "data_corruption" or any_task(event.tasks, bad_checkpoint) then
    return "safe_recovery"
  end
  if event.strategy ~= nil then
    return event.strategy
  end
  local crashed = fault_type == "crash" or (fault_type == nil and event.kind == "node_failed")
  if crashed and any_task(event.tasks, critical) then
    return "safe_recovery"
  end
  if fault_type == "hang" or fault_type == "network" then
    return "safe_recovery"
  end
  return "fast_recovery"
end

-- Running tasks of this priority or below may be moved to even the load.
local LOW_PRIORITY = 4

function M.predicted(event, view)
  if view.partition_suspected then
    return "watch"
  end
  local state = event.node and event.node.state
  if state ~= "alive" and state ~= "probation" then
    return "watch"
  end
  return "drain"
end

function M.rebalance(event, view)
  local allow = {}
  for _, move in ipairs(event.moves or {}) do
    local queued = move.state == "assigned"
    local low = not move.critical and (move.priority or 9) <= LOW_PRIORITY and move.checkpoint ~= nil
    if queued or low then
      allow[#allow + 1] = move.task_id
    end
  end
  return allow
end

function M.on_conflict(event, view)
  return "keep_progress"
end

-- ---- self_test: runs at every load; an error() refuses the whole load ----

local function task(id, opts)
  opts = opts or {}
  return {
    task_id = id,
    priority = opts.priority or 5,
    critical = opts.critical or false,
    attempt = 1,
    requirements = { slots = 1, labels = {} },
    checkpoint = opts.checkpoint,
  }
end

local function event(fault_type, tasks, strategy)
  return {
    kind = fault_type and "node_failed" or "node_left",
    strategy = strategy,
    fault = fault_type and {
      id = "f-1", fault_type = fault_type, severity_level = "critical",
      predicted = false, metadata = {},
    } or nil,
    node = { node_id = "n1", epoch = 1, state = "failed", labels = {}, capacity = { slots = 4 } },
    tasks = tasks,
  }
end

local function view(partition)
  return { nodes = {}, mode = "normal", partition_suspected = partition or false, strategies = {}, now_ms = 0 }
end

function M.self_test()
  local good = { version = 3, age_ms = 100, checksum_ok = true }
  local bad = { version = 3, age_ms = 100, checksum_ok = false }
  local cases = {
    { "crash, no critical task", event("crash", { task("a"), task("b", { checkpoint = good }) }), view(), "fast_recovery" },
    { "crash with a critical task", event("crash", { task("a"), task("c", { critical = true }) }), view(), "safe_recovery" },
    { "crash, critical task, fast requested", event("crash", { task("c", { critical = true }) }, "fast_recovery"), view(), "fast_recovery" },
    { "data corruption", event("data_corruption", { task("a") }), view(), "safe_recovery" },
    { "bad checksum on a crash", event("crash", { task("a", { checkpoint = bad }) }), view(), "safe_recovery" },
    { "bad checksum beats a request", event("crash", { task("a", { checkpoint = bad }) }, "fast_recovery"), view(), "safe_recovery" },
    { "hang", event("hang", { task("a") }), view(), "safe_recovery" },
    { "network", event("network", {}), view(), "safe_recovery" },
    { "overload", event("overload", { task("a") }), view(), "fast_recovery" },
    { "node left", event(nil, { task("a") }), view(), "fast_recovery" },
    { "partition", event("crash", { task("a") }), view(true), "degraded_service" },
    { "partition beats a request", event("crash", { task("a") }, "fast_recovery"), view(true), "degraded_service" },
    { "manual request", event(nil, {}, "safe_recovery"), view(), "safe_recovery" },
  }
  for _, case in ipairs(cases) do
    local got = M.select(case[2], case[3])
    if got ~= case[4] then
      error(string.format("self_test: %s: selected %s, expected %s", case[1], tostring(got), case[4]))
    end
  end
  local function predicted(state)
    return { kind = "predicted", node = { node_id = "n1", state = state },
             prediction = { metric = "latency_ms", trend = 40, eta_ms = 20000 }, tasks = {} }
  end
  local answers = {
    { "alive agent", predicted("alive"), view(), "drain" },
    { "agent on probation", predicted("probation"), view(), "drain" },
    { "agent already draining", predicted("draining"), view(), "watch" },
    { "partition", predicted("alive"), view(true), "watch" },
  }
  for _, case in ipairs(answers) do
    local got = M.predicted(case[2], case[3])
    if got ~= case[4] then
      error(string.format("self_test: predicted, %s: %s, expected %s", case[1], tostring(got), case[4]))
    end
  end
  local ck = { version = 2, age_ms = 10 }
  local allowed = M.rebalance({ kind = "rebalance", moves = {
    { task_id = "queued", state = "assigned", priority = 9, critical = false },
    { task_id = "low", state = "running", priority = 2, critical = false, checkpoint = ck },
    { task_id = "low-no-checkpoint", state = "running", priority = 2, critical = false },
    { task_id = "high", state = "running", priority = 8, critical = false, checkpoint = ck },
    { task_id = "critical", state = "running", priority = 0, critical = true, checkpoint = ck },
  } }, view())
  if #allowed ~= 2 or allowed[1] ~= "queued" or allowed[2] ~= "low" then
    error("self_test: rebalance allowed " .. table.concat(allowed, ",") .. ", expected queued,low")
  end
  local conflict = M.on_conflict({ kind = "checkpoint", task_id = "t", attempt = 1,
    task_attempt = 2, version = 9, stored_version = 4 }, view())
  if conflict ~= "keep_progress" then
    error("self_test: on_conflict answered " .. tostring(conflict) .. ", expected keep_progress")
  end
end

return M
