-- degraded_service.lua: keep the essential work alive when the cluster cannot
-- carry everything (a suspected partition, mass failure).
--
-- With fault_tolerance.recovery_strategies.degraded_service.
-- essential_services_only (the default), only critical tasks are reassigned
-- (most urgent first); every other task is paused, not moved, so an agent
-- that comes back after a partition can continue it (DESIGN.md decision 6).
-- Without it, every task is reassigned as fast_recovery would. Either way
-- the plan asks the engine to degrade to performance_limit percent and
-- raises a major alert saying what was done.

local M = { name = "degraded_service" }

local function ordered(tasks)
  local list = {}
  for i, t in ipairs(tasks or {}) do
    list[i] = { task = t, index = i }
  end
  table.sort(list, function(a, b)
    local ca, cb = a.task.critical == true, b.task.critical == true
    if ca ~= cb then
      return ca
    end
    local pa, pb = tonumber(a.task.priority) or 0, tonumber(b.task.priority) or 0
    if pa ~= pb then
      return pa > pb
    end
    return a.index < b.index
  end)
  local out = {}
  for i, entry in ipairs(list) do
    out[i] = entry.task
  end
  return out
end

function M.plan(event, view)
  local cfg = (view.strategies and view.strategies.degraded_service) or {}
  local essential_only = cfg.essential_services_only ~= false
  local limit = math.floor(tonumber(cfg.performance_limit) or 50)
  limit = math.max(0, math.min(100, limit))

  local actions, moved, paused = {}, 0, 0
  for _, t in ipairs(ordered(event.tasks)) do
    if t.critical == true or not essential_only then
      moved = moved + 1
      actions[#actions + 1] = { action = "reassign", task_id = t.task_id, order = moved }
    else
      paused = paused + 1
      actions[#actions + 1] = { action = "pause", task_id = t.task_id }
    end
  end
  actions[#actions + 1] = { action = "degrade", performance_limit = limit }

  local node = (event.node and event.node.node_id) or "?"
  local why = view.partition_suspected and "partition suspected" or "degraded service"
  actions[#actions + 1] = {
    action = "alert",
    severity = "major",
    summary = string.format("%s: node %s lost; %d task(s) reassigned, %d paused; performance limited to %d%%",
      why, node, moved, paused, limit),
  }
  return { actions = actions }
end

-- ---- self_test: runs at every load; an error() refuses the whole load ----

local function task(id, priority, critical)
  return {
    task_id = id, priority = priority, critical = critical, attempt = 1,
    requirements = { slots = 1, labels = {} },
  }
end

local function count(actions, kind)
  local n = 0
  for _, a in ipairs(actions) do
    if a.action == kind then
      n = n + 1
    end
  end
  return n
end

function M.self_test()
  local event = {
    kind = "node_failed",
    fault = { id = "f-3", fault_type = "network", severity_level = "major", predicted = false, metadata = {} },
    node = { node_id = "n3", epoch = 1, state = "failed", labels = {}, capacity = { slots = 4 } },
    tasks = { task("batch", 9, false), task("crit-a", 2, true), task("crit-b", 6, true), task("idle", 0, false) },
  }
  local function view(essential)
    return {
      nodes = {}, mode = "normal", partition_suspected = true, now_ms = 0,
      strategies = { degraded_service = { essential_services_only = essential, performance_limit = 40 } },
    }
  end

  local a = M.plan(event, view(true)).actions
  local want = {
    { "reassign", "crit-b" }, { "reassign", "crit-a" }, { "pause", "batch" }, { "pause", "idle" },
  }
  for i, w in ipairs(want) do
    if a[i].action ~= w[1] or a[i].task_id ~= w[2] then
      error(string.format("self_test: action %d is %s %s, expected %s %s",
        i, tostring(a[i].action), tostring(a[i].task_id), w[1], w[2]))
    end
  end
  if a[5].action ~= "degrade" or a[5].performance_limit ~= 40 then
    error("self_test: expected degrade to 40% after the tasks")
  end
  if a[6].action ~= "alert" or a[6].severity ~= "major" or type(a[6].summary) ~= "string" then
    error("self_test: expected a major alert last")
  end

  local all = M.plan(event, view(false)).actions
  if count(all, "reassign") ~= 4 or count(all, "pause") ~= 0 then
    error("self_test: without essential_services_only every task must be reassigned")
  end
end

return M
