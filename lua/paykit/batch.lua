--- paykit.batch: run many provider calls at once from plain Lua (no event loop needed).
--
-- Each task runs in its own coroutine and calls ordinary provider methods: a batch is its
-- tasks run on one `paykit.loop` (the loop is each task's scheduler: when the transport,
-- paykit.http, is about to send a request, the loop hands it to the C core and resumes the
-- task with its own response). A retry's backoff is a timer of the loop, so one task waiting
-- to retry does not hold up the others. Provider modules need no change; a task may make any
-- number of requests, one after another.
--
-- Windowed: at most max_in_flight tasks run at once, started in task order; the next task
-- starts when one of them has finished. A task waiting for its turn is only the caller's
-- function (no coroutine, no state), and a finished task leaves only its two values behind,
-- so a batch of 100k tasks takes the memory of max_in_flight running ones plus its results.
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

local _M = {}

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
  return max
end

-- Outside nginx: a window of max tasks on a paykit.loop; each finished task's callback keeps its
-- two values and starts the next task.
local function run_plain(tasks, max)
  local lp = require("paykit.loop").new { max_in_flight = max }
  local n = #tasks
  local results, errs = {}, {}
  local started, done, filling = 0, 0, false
  local fill
  -- one callback per window slot would do as well; one per task costs a closure and keeps
  -- the index without a table
  local function start(i)
    lp:start(tasks[i], function(r, e)
      results[i], errs[i] = r, e
      done = done + 1
      fill()
    end)
  end
  -- Starts tasks while the window has room. A task that ends inside start() (no request, or an
  -- error) calls fill again from its callback: the flag turns that into one more turn of this
  -- loop instead of a recursion as deep as the batch.
  function fill()
    if filling then return end
    filling = true
    while started < n and started - done < max do
      started = started + 1
      start(started)
    end
    filling = false
  end
  local ok, err = pcall(function()
    fill()
    lp:run()
  end)
  lp:close()
  if not ok then error(err, 0) end
  return results, errs
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
-- @tparam[opt] table opts `max_in_flight` (a positive integer, default 64): the most requests
--   in flight at once (inside nginx: the most tasks running at once)
-- @treturn table results: results[i] is the first value task i returned
-- @treturn table errs: errs[i] is the second value task i returned, or the error it raised
-- @raise when tasks is not an array of functions or max_in_flight is not a positive integer
function _M.run(tasks, opts)
  local max = check(tasks, opts)
  if #tasks == 0 then return {}, {} end
  if runtime.in_cosocket_phase() then return run_nginx(tasks, max) end
  return run_plain(tasks, max)
end

return setmetatable(_M, { __call = function(_, tasks, opts) return _M.run(tasks, opts) end })
