--- paykit.batch: run many provider calls at once from plain Lua (no event loop needed).
--
-- Each task runs in its own coroutine and calls ordinary provider methods. When the transport
-- (paykit.http) is about to send a request inside such a coroutine it yields the prepared
-- request instead; the scheduler collects the requests of every waiting task, sends them
-- together with the core client's batch (libcurl multi, at most max_in_flight at once),
-- resumes each task with its own response and repeats until every task has finished. A retry's
-- backoff sleep yields too, so one task waiting to retry does not hold up the others.
-- Provider modules need no change; a task may make any number of requests, one after another.
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
local http = require "paykit.http"

local _M = {}

local unpack = table.unpack or unpack -- luacheck: ignore

local function pack(...) return { n = select("#", ...), ... } end

-- A task that raised: keep its error (errors.is(e) ones as they are) and carry on with the rest.
local function failed(e) return { n = 2, nil, e } end

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

-- Resumes a task coroutine; returns what it yielded or the packed final values.
-- state: "request" (transport, req), "sleep" (seconds), "done" (packed values)
local function step(co, ...)
  local r = pack(coroutine.resume(co, ...))
  if not r[1] then return "done", failed(r[2]) end
  if coroutine.status(co) == "dead" then return "done", { n = r.n - 1, unpack(r, 2, r.n) } end
  if r[2] == http.BATCH_REQUEST then return "request", r[3], r[4] end
  if r[2] == http.BATCH_SLEEP then return "sleep", r[3] end
  return "done", failed("paykit.batch: a task yielded something other than a request (coroutine.yield inside a task is not supported)")
end

-- Core shape for the transport: a response table, or nil, message, code, maybe_sent.
local function unwrap(res)
  if res == nil then return nil, "no response", "other", true end
  if res.error ~= nil and res.status == nil then return nil, res.error, res.code, res.maybe_sent end
  return res
end

local function run_plain(tasks, max)
  local n = #tasks
  local out = {}
  local waiting = {}  -- {i, co, transport, req}, sent in the next round
  local sleepers = {} -- {i, co, wake}
  local runnable = {} -- {i, co, args...}

  local function settle(i, co, state, a, b)
    if state == "done" then
      http.batch_coroutines[co] = nil
      out[i] = a
    elseif state == "request" then
      waiting[#waiting + 1] = { i = i, co = co, transport = a, req = b }
    else
      sleepers[#sleepers + 1] = { i = i, co = co, wake = http.now() + (tonumber(a) or 0) }
    end
  end

  for i = 1, n do
    local co = coroutine.create(tasks[i])
    http.batch_coroutines[co] = true
    runnable[#runnable + 1] = { i = i, co = co, args = { n = 0 } }
  end

  while true do
    for _, t in ipairs(runnable) do
      settle(t.i, t.co, step(t.co, unpack(t.args, 1, t.args.n)))
    end
    runnable = {}
    if #waiting > 0 then
      -- One core batch per transport (each has its own client: TLS settings, timeouts).
      local groups, order = {}, {}
      for _, w in ipairs(waiting) do
        local g = groups[w.transport]
        if not g then g = {}; groups[w.transport] = g; order[#order + 1] = w.transport end
        g[#g + 1] = w
      end
      waiting = {}
      for _, transport in ipairs(order) do
        local g, reqs = groups[transport], {}
        for k, w in ipairs(g) do reqs[k] = w.req end
        local client = transport:core_client()
        local ok, responses = pcall(client.batch, client, reqs, { max_in_flight = max })
        for k, w in ipairs(g) do
          local args
          if ok then args = pack(unwrap(responses[k])) else args = pack(nil, tostring(responses), "other", false) end
          runnable[#runnable + 1] = { i = w.i, co = w.co, args = args }
        end
      end
    end
    if #sleepers > 0 then
      local now, soonest, still = http.now(), nil, {}
      for _, s in ipairs(sleepers) do
        if s.wake <= now then
          runnable[#runnable + 1] = { i = s.i, co = s.co, args = { n = 0 } }
        else
          still[#still + 1] = s
          if not soonest or s.wake < soonest then soonest = s.wake end
        end
      end
      sleepers = still
      if #runnable == 0 and soonest then http.sleep(soonest - now) end
    end
    if #runnable == 0 and #sleepers == 0 then break end
  end

  local results, errs = {}, {}
  for i = 1, n do results[i], errs[i] = out[i][1], out[i][2] end
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
  if http.in_cosocket_phase() then return run_nginx(tasks, max) end
  return run_plain(tasks, max)
end

return setmetatable(_M, { __call = function(_, tasks, opts) return _M.run(tasks, opts) end })
