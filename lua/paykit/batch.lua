--- paykit.batch: run many provider calls at once from plain Lua (no event loop needed).
--
-- Tasks call ordinary provider methods: a batch is max_in_flight workers on one `paykit.loop`,
-- each a coroutine running task after task, the next one in task order whenever it has finished
-- one (the loop is each worker's scheduler: when the transport, paykit.http, is about to send a
-- request, the loop hands it to the C core and resumes the worker with its own response). A
-- retry's backoff is a timer of the loop, so one task waiting to retry does not hold up the
-- others (it keeps its place in the window). Provider modules need no change; a task may make
-- any number of requests, one after another.
--
-- Windowed: at most max_in_flight tasks run at once. A task waiting for its turn is only the
-- caller's function (no coroutine, no state), and a finished task leaves only its two values
-- behind, so a batch of 100k tasks takes the memory of max_in_flight running ones plus its
-- results; no coroutine is made (and collected) per task. A batch of 1,000 tasks or more ends
-- with a full collection and the freed heap given back to the system (glibc's malloc_trim), so
-- a Lua 5.4 process returns to about its size before the batch (measured on a 100k-task Moka
-- batch, bench/batch_cost.lua: +1.5 MB after, peak +11 MB). Nothing of a batch stays reachable
-- once it returned: its closures let go of tasks and results (a LuaJIT trace keeps the closures
-- it was recorded in). LuaJIT's own allocator keeps the parts of its peak that hold an object
-- made during the batch (its traces among them): the same batch ends at +4.6-4.8 MB there (peak
-- +6.4-6.9 MB); `gc_pause = 100` lowers the peak and so what stays (+1.9-2.6 MB after, peak +3.7-4.7 MB) at
-- the price of more collector work (20-40% more CPU per call on LuaJIT; none measurable on
-- Lua 5.4).
--
-- Inside nginx (a cosocket phase) the tasks run as ngx.thread light threads instead, at most
-- max_in_flight at a time, and the cosocket transport does the waiting.
--
-- The module table is callable: `paykit.batch(tasks, opts)` is @{run}.
-- @module paykit.batch
-- @usage
--   local results, errs = paykit.batch({
--     function() return gw:status("order-1") end,
--     function() return gw:status("order-2") end,
--   }, { max_in_flight = 64 })
--   -- results[i], errs[i]: the first two values task i returned (or nil, the error it raised)
local runtime = require "paykit.runtime"
local core = require "paykit.core"
local type = type -- (asked of every task before the batch starts)

-- A batch of at least this many tasks ends with a full collection and the freed memory given
-- back to the system (`paykit.core.release_memory`).
local RELEASE_AFTER = 1000

local _M = {}

-- An array for n values: made at its full size where the runtime can (LuaJIT's table.new), so
-- a large batch does not grow its results through ever larger copies while it runs
local has_new, table_new = pcall(require, "table.new")
local function new_array(n) return has_new and table_new(n, 0) or {} end

local function pack(...) return { n = select("#", ...), ... } end

local function check(tasks, opts)
  if type(tasks) ~= "table" then error("paykit.batch: tasks must be an array of functions", 3) end
  for i = 1, #tasks do
    if type(tasks[i]) ~= "function" then error("paykit.batch: task " .. i .. " is not a function", 3) end
  end
  opts = opts or {}
  local max = opts.max_in_flight or 64
  if type(max) ~= "number" or max < 1 or max ~= math.floor(max) then
    error("paykit.batch: max_in_flight must be a positive integer", 3)
  end
  local pause = opts.gc_pause
  if pause ~= nil and (type(pause) ~= "number" or pause < 50 or pause > 1000 or pause ~= math.floor(pause)) then
    error("paykit.batch: gc_pause must be an integer from 50 to 1000 (the collector's pause, percent)", 3)
  end
  return max, pause
end

-- Outside nginx: max workers on one paykit.loop, each a loop call running task after task (the
-- next in order while one is left), so a task costs no coroutine of its own and a queued one is
-- only the caller's function. A worker whose task yielded something other than a request is
-- ended by the loop: that task gets the loop's error and a new worker takes over.
local function run_plain(tasks, max, gc_pause)
  local lp = require("paykit.loop").new { max_in_flight = max }
  local ids_slot = require("paykit.errors")._ids_slot
  local n = #tasks
  local results, errs = new_array(n), {}
  local nexti = 0
  local current = {} -- worker -> the index of the task it runs
  local function worker(w)
    -- the answer ids paykit.errors keeps for this worker's coroutine: emptied before each task,
    -- so nothing of the previous task's answer ids leaks into this one's errors (as a take_ids
    -- per task would, without its running() and lookup by thread)
    local ids = ids_slot()
    while nexti < n do
      local i = nexti + 1
      nexti = i
      current[w] = i
      ids.r, ids.c = false, false
      -- no pcall: a task that raises ends its worker's coroutine, and the loop's callback
      -- (ended) files the error and starts a new worker (a pcall per task cost its setup and,
      -- on Lua 5.4, the unrolling of its frame at every resume after a yield)
      local r, e = tasks[i]()
      results[i] = r
      -- most tasks return no second value: no store of a nil into errs (a new-key miss each)
      if e ~= nil then errs[i] = e end
    end
    current[w] = nil
  end
  local wanted, spawning = {}, false
  local spawn
  local function ended(w)
    return function(_, err)
      local i = current[w]
      if i then -- the worker did not end by itself: its task's coroutine was given up
        current[w] = nil
        results[i], errs[i] = nil, err
        spawn(w)
      end
    end
  end
  -- Starts workers; a worker ended at once by its first task asks again from its callback, which
  -- the flag turns into one more turn of this loop instead of a recursion
  function spawn(w)
    wanted[#wanted + 1] = w
    if spawning then return end
    spawning = true
    while #wanted > 0 do
      local v = table.remove(wanted)
      if nexti < n then lp:start(function() return worker(v) end, ended(v)) end
    end
    spawning = false
  end
  -- with gc_pause, the collector's pause while the batch runs (100: a cycle starts as soon as the
  -- last one ended, instead of letting the heap grow to twice the live data first)
  local pause = gc_pause and collectgarbage("setpause", gc_pause)
  local ok, err = pcall(function()
    for w = 1, math.min(max, n) do spawn(w) end
    lp:run()
  end)
  if pause then collectgarbage("setpause", pause) end
  lp:close()
  -- The closures above are the batch's only references to its tables, and a LuaJIT trace
  -- compiled through them keeps them (a trace holds the closures it was recorded in, and the
  -- values of upvalues never written as constants): cleared here, tasks and results are
  -- freed as soon as the caller lets go of them, not when the JIT next flushes its traces
  -- (measured: a 100k-task batch kept 2.2 MB of Lua heap, and its RSS, after the caller
  -- dropped both).
  local res, es = results, errs
  tasks, results, errs, current, lp, wanted = nil, nil, nil, nil, nil, nil -- luacheck: ignore
  if not ok then error(err, 0) end
  if n >= RELEASE_AFTER then
    -- a large batch: what it freed goes back to the system (glibc keeps freed memory otherwise)
    collectgarbage("collect")
    core.release_memory()
  end
  return res, es
end

local function run_nginx(tasks, max)
  local ngx = rawget(_G, "ngx")
  local n = #tasks
  local results, errs = {}, {}
  local next_task = 1
  local function worker()
    while next_task <= n do
      local i = next_task
      next_task = i + 1
      local r = pack(pcall(tasks[i]))
      if r[1] then results[i], errs[i] = r[2], r[3] else results[i], errs[i] = nil, r[2] end
    end
  end
  local threads = {}
  for k = 1, math.min(max, n) do threads[k] = ngx.thread.spawn(worker) end
  for _, th in ipairs(threads) do ngx.thread.wait(th) end
  return results, errs
end

--- Runs the tasks concurrently and collects what each returned.
-- batch(tasks[, {max_in_flight = 64}]) -> results, errs (arrays in task order)
-- A task that raises does not stop the others: its error is kept in errs.
-- @tparam {function,...} tasks each a function of no arguments that makes provider calls
-- @tparam[opt] table opts `max_in_flight` (a positive integer, default 64): the most tasks
--   running (so requests in flight) at once; `gc_pause` (an integer, 50-1000): the garbage
--   collector's pause while the batch runs (outside nginx), restored afterwards
-- @treturn table results: results[i] is the first value task i returned
-- @treturn table errs: errs[i] is the second value task i returned, or the error it raised
-- @raise when tasks is not an array of functions, max_in_flight is not a positive integer or
--   gc_pause is out of range
function _M.run(tasks, opts)
  local max, gc_pause = check(tasks, opts)
  if #tasks == 0 then return {}, {} end
  if runtime.in_cosocket_phase() then return run_nginx(tasks, max) end
  return run_plain(tasks, max, gc_pause)
end

return setmetatable(_M, { __call = function(_, tasks, opts) return _M.run(tasks, opts) end })
