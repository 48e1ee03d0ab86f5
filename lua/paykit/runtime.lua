--- paykit.runtime: where paykit is running, below the transports (paykit.http, paykit.cosocket).
-- Inside nginx: the current phase, whether cosockets may be used in it, and the refusal of a
-- request in a phase where they may not (where libcurl would block the worker); outside
-- nginx: plain Lua. A clock and a sleep for both; the scheduler a coroutine runs under
-- (paykit.loop's, for its calls and paykit.batch's tasks). Also the library's version and the
-- User-Agent paykit sends.
--
-- Cosocket phases: rewrite, server_rewrite, access, content, timer, ssl_cert,
-- ssl_session_fetch, ssl_client_hello, preread. In any other nginx phase (init, init_worker,
-- set, header_filter, body_filter, log, balancer, exit_worker, ssl_session_store, ...) a
-- paykit request is refused with a config error, code `blocking_phase`, unless the caller
-- opts into blocking the worker: `allow_blocking = true` in a provider's (or
-- `paykit.http.new`'s) options, or one call wrapped in @{allow_blocking}. In init_worker,
-- prefer `ngx.timer.at(0, fn)`: the timer runs in a cosocket phase.
--
-- Fields: `VERSION` (the library version, also `paykit.VERSION`), `USER_AGENT`
-- (`"paykit/" .. VERSION`, what paykit sends unless `user_agent` is given),
-- `COSOCKET_PHASES` (the set of phases above).
-- @module paykit.runtime
-- @usage
--   local runtime = require "paykit.runtime"
--   runtime.phase()                 --> "content" inside a content handler, nil outside nginx
--   local err = runtime.check_blocking("moka.status")   -- nil, or the refusal (a paykit error)
--   local r, err = runtime.allow_blocking(function() return gw:status("order-17") end)
local _M = {}

-- The library version ("0.1.0"), also `paykit.VERSION`.
_M.VERSION = "0.1.0"

-- The User-Agent paykit sends unless told otherwise: `"paykit/" .. VERSION`.
_M.USER_AGENT = "paykit/" .. _M.VERSION

local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
_M.COSOCKET_PHASES = COSOCKET_PHASES

-- These run on every request: outside nginx (no global ngx) each is one rawget.
local G, rawget, pcall, running = _G, rawget, pcall, coroutine.running

-- The current phase, or nil when there is no ngx.get_phase (outside nginx).
local function current_phase()
  local ngx = rawget(G, "ngx")
  if ngx == nil or type(ngx) ~= "table" then return nil end
  local get_phase = ngx.get_phase
  if type(get_phase) ~= "function" then return nil end
  local ok, p = pcall(get_phase)
  if ok then return p end
  return nil
end

--- The current nginx phase.
-- @treturn ?string `ngx.get_phase()` ("content", "log", "init_worker", ...), or nil outside nginx
function _M.phase()
  return current_phase()
end

--- Whether cosockets may be used here (inside nginx, in a cosocket phase).
-- @treturn boolean
function _M.in_cosocket_phase()
  if rawget(G, "ngx") == nil then return false end
  local p = current_phase()
  return p ~= nil and COSOCKET_PHASES[p] == true
end

--- The current time in seconds, for deadlines and intervals.
-- ngx.now() inside nginx (time updated first), else the C core's monotonic clock
-- (`paykit.core.monotonic`).
-- @treturn number seconds (compare two readings; not a date)
function _M.now()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.now then
    if ngx.update_time then ngx.update_time() end
    return ngx.now()
  end
  return require("paykit.core").monotonic()
end

--- Waits s seconds: ngx.sleep in a cosocket phase, else the C core's sleep. Nothing for s <= 0.
-- @tparam number s seconds
function _M.sleep(s)
  if not s or s <= 0 then return end
  if _M.in_cosocket_phase() then return rawget(_G, "ngx").sleep(s) end
  return require("paykit.core").sleep(s)
end

-- The scheduler of each coroutine that paykit.loop (or paykit.batch) runs (weak keys).
local schedulers = setmetatable({}, { __mode = "k" })
-- How many are installed (a coroutine collected with its scheduler still installed keeps it
-- counted): while none is, @{scheduler} answers nil without asking which coroutine runs.
local installed = 0
_M.schedulers_installed = 0 -- the same count, for paykit.http (read only)
-- The table itself, for paykit.http's first try under a scheduler (read only: written by
-- set_scheduler alone): `scheduler_of[coroutine.running()]` is @{scheduler}() without its call
_M.scheduler_of = schedulers

--- Installs (or, with nil, removes) the scheduler of a coroutine.
-- A scheduler is what runs the coroutine: an object with `request(transport, req)` (send
-- one attempt: returns the core shape, `res | nil, message, code, maybe_sent`) and
-- `sleep(s)` (wait s seconds), both called as methods from inside the coroutine.
-- paykit.http asks @{scheduler} before sending a request or sleeping a backoff, so the
-- transport knows nothing of who schedules (paykit.loop installs one for each of its calls).
-- @tparam thread co the coroutine
-- @tparam ?table s its scheduler, or nil
function _M.set_scheduler(co, s)
  if type(co) ~= "thread" then error("paykit.runtime.set_scheduler: co must be a coroutine", 2) end
  if s ~= nil and (type(s) ~= "table" or type(s.request) ~= "function" or type(s.sleep) ~= "function") then
    error("paykit.runtime.set_scheduler: a scheduler needs request and sleep methods", 2)
  end
  local old = schedulers[co]
  if old == nil and s ~= nil then installed = installed + 1 elseif old ~= nil and s == nil then installed = installed - 1 end
  _M.schedulers_installed = installed
  schedulers[co] = s
end

--- The scheduler of a coroutine (default: the running one), or nil when none was installed.
-- Coroutines a task creates itself have none: their requests are made where they run.
-- @tparam[opt] thread co
-- @treturn ?table the scheduler
function _M.scheduler(co)
  if installed == 0 then return nil end
  co = co or running()
  if co == nil then return nil end
  return schedulers[co]
end

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

-- Calls of allow_blocking in progress. Only counted in a phase without cosockets: nothing
-- yields back to nginx there, so no other request can run (and see it) until fn returns.
local blocking_depth = 0

--- Runs fn(...) with blocking allowed in a phase without cosockets (the per-call opt-in).
-- In any other place fn simply runs. Errors raised by fn are raised again after the opt-in
-- is withdrawn.
-- @tparam function fn
-- @param ... fn's arguments
-- @return what fn returns
function _M.allow_blocking(fn, ...)
  if type(fn) ~= "function" then error("paykit.runtime.allow_blocking: fn must be a function", 2) end
  local phase = current_phase()
  if phase == nil or COSOCKET_PHASES[phase] then return fn(...) end
  blocking_depth = blocking_depth + 1
  local res = pack(pcall(fn, ...))
  blocking_depth = blocking_depth - 1
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

--- The refusal of a request in a phase without cosockets, or nil when the request may go.
-- nil outside nginx, in a cosocket phase, with `allowed` true, or inside @{allow_blocking}.
-- @tparam[opt] string op the operation, for the message ("moka.status")
-- @tparam[opt] boolean allowed the caller's `allow_blocking`
-- @treturn ?table a config error (`paykit.errors`), code `blocking_phase`, field
--   `allow_blocking`, whose message names the phase and the opt-in
function _M.check_blocking(op, allowed)
  if rawget(G, "ngx") == nil then return nil end
  local phase = current_phase()
  if phase == nil or COSOCKET_PHASES[phase] or allowed or blocking_depth > 0 then return nil end
  local errors = require "paykit.errors"
  local hint = phase == "init_worker" and " or from an ngx.timer.at callback started here" or ""
  return errors.new {
    kind = "config", code = "blocking_phase", field = "allow_blocking", op = op,
    message = (op or "paykit") .. ": refused in nginx's " .. phase .. " phase: cosockets are not available " ..
      "there and libcurl would block the worker; call it from a rewrite, access or content handler or a " ..
      "timer" .. hint .. ", or opt into blocking with allow_blocking = true (in the instance's options) or " ..
      "paykit.runtime.allow_blocking(fn) around the call",
  }
end

return _M
