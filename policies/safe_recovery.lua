-- safe_recovery.lua: never run a task twice, never resume from a bad
-- checkpoint.
--
-- First a check_consistency for every task that has a checkpoint: the engine
-- verifies the checksum of its newest checkpoint and, when that fails,
-- restores the newest older version that verifies, else a good copy from
-- the newest completed backups, else lets the task start over, recording a
-- data_corruption fault (DESIGN.md decision 9; policies/README.md,
-- "Checkpoint repair"). Then a reassign per task in the same order as
-- fast_recovery (critical first, then priority, then as listed); a task being
-- repaired moves once its repair committed. The engine
-- executes safe_recovery reassignments only after the node's lease expired
-- plus a clock-drift margin (decision 4), so this plan needs no wait actions.
--
-- With fault_tolerance.recovery_strategies.safe_recovery.consistency_check
-- set to false, only checkpoints already known bad (checksum_ok == false)
-- are checked.

local M = { name = "safe_recovery" }

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
  local cfg = (view.strategies and view.strategies.safe_recovery) or {}
  local check_all = cfg.consistency_check ~= false
  local tasks = ordered(event.tasks)
  local actions = {}
  for _, t in ipairs(tasks) do
    local cp = t.checkpoint
    if cp ~= nil and (check_all or cp.checksum_ok == false) then
      actions[#actions + 1] = { action = "check_consistency", task_id = t.task_id }
    end
  end
  for i, t in ipairs(tasks) do
    actions[#actions + 1] = { action = "reassign", task_id = t.task_id, order = i }
  end
  return { actions = actions }
end

-- ---- self_test: runs at every load; an error() refuses the whole load ----

local function task(id, priority, critical, checkpoint)
  return {
    task_id = id, priority = priority, critical = critical, attempt = 3,
    requirements = { slots = 1, labels = {} }, checkpoint = checkpoint,
  }
end

local function describe(actions)
  local parts = {}
  for i, a in ipairs(actions) do
    parts[i] = tostring(a.action) .. ":" .. tostring(a.task_id)
  end
  return table.concat(parts, ", ")
end

local function expect(actions, want, what)
  local got = describe(actions)
  if got ~= want then
    error(string.format("self_test: %s: got [%s], expected [%s]", what, got, want))
  end
end

function M.self_test()
  local good = { version = 4, age_ms = 2000, checksum_ok = true }
  local bad = { version = 2, age_ms = 9000, checksum_ok = false }
  local event = {
    kind = "node_failed",
    fault = { id = "f-2", fault_type = "data_corruption", severity_level = "major", predicted = false, metadata = {} },
    node = { node_id = "n2", epoch = 5, state = "failed", labels = {}, capacity = { slots = 4 } },
    tasks = { task("plain", 3, false, nil), task("good", 8, false, good), task("crit", 1, true, bad) },
  }
  local function view(check)
    return {
      nodes = {}, mode = "normal", partition_suspected = false, now_ms = 0,
      strategies = { safe_recovery = { max_time_ms = 600000, consistency_check = check } },
    }
  end
  expect(M.plan(event, view(true)).actions,
    "check_consistency:crit, check_consistency:good, reassign:crit, reassign:good, reassign:plain",
    "consistency_check on")
  expect(M.plan(event, view(false)).actions,
    "check_consistency:crit, reassign:crit, reassign:good, reassign:plain",
    "consistency_check off")
  for i, a in ipairs(M.plan(event, view(true)).actions) do
    if a.action == "reassign" and (a.order ~= i - 2 or a.target ~= nil) then
      error(string.format("self_test: reassign of %s has order %s, expected %d", a.task_id, tostring(a.order), i - 2))
    end
  end
end

return M
