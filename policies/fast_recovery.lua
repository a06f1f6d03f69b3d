-- fast_recovery.lua: move every task of the lost node at once.
--
-- Reassigns at detection and relies on fencing: a task may briefly run twice,
-- but only one attempt can commit (DESIGN.md decision 4). Order: critical
-- tasks first, then by priority (9 = most urgent), then as the engine listed
-- them. No target: the engine places each task on a healthy node within
-- fault_tolerance.recovery_strategies.fast_recovery.resource_limit.

local M = { name = "fast_recovery" }

-- Policy files cannot require each other: each carries its own helpers.
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
  local actions = {}
  for i, t in ipairs(ordered(event.tasks)) do
    actions[#actions + 1] = { action = "reassign", task_id = t.task_id, order = i }
  end
  return { actions = actions }
end

-- ---- self_test: runs at every load; an error() refuses the whole load ----

local function task(id, priority, critical)
  return {
    task_id = id, priority = priority, critical = critical, attempt = 1,
    requirements = { slots = 1, labels = {} },
  }
end

function M.self_test()
  local event = {
    kind = "node_failed",
    fault = { id = "f-1", fault_type = "crash", severity_level = "critical", predicted = false, metadata = {} },
    node = { node_id = "n1", epoch = 2, state = "failed", labels = {}, capacity = { slots = 8 } },
    tasks = {
      task("low", 1, false), task("high", 9, false), task("crit-low", 0, true),
      task("mid-a", 5, false), task("crit-high", 7, true), task("mid-b", 5, false),
    },
  }
  local view = {
    nodes = {}, mode = "normal", partition_suspected = false, now_ms = 0,
    strategies = { fast_recovery = { max_time_ms = 120000, resource_limit = 80 } },
  }
  local want = { "crit-high", "crit-low", "high", "mid-a", "mid-b", "low" }
  local plan = M.plan(event, view)
  if #plan.actions ~= #want then
    error(string.format("self_test: %d actions, expected %d", #plan.actions, #want))
  end
  for i, id in ipairs(want) do
    local a = plan.actions[i]
    if a.action ~= "reassign" or a.task_id ~= id or a.order ~= i or a.target ~= nil then
      error(string.format("self_test: action %d is %s %s (order %s), expected reassign %s (order %d)",
        i, tostring(a.action), tostring(a.task_id), tostring(a.order), id, i))
    end
  end
  if #M.plan({ kind = "node_left", tasks = {} }, view).actions ~= 0 then
    error("self_test: a node without tasks must give an empty plan")
  end
end

return M
