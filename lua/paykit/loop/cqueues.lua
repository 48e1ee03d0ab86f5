--- paykit.loop.cqueues: a paykit loop driven by a cqueues controller (Debian's lua-cqueues).
--
-- `attach(lp, cq)` adds one coroutine to the controller that waits (cqueues.poll) on the
-- loop's descriptor, its next timeout and a condition signalled by `loop:start`, and steps
-- the loop with `step(0)`. `call(lp, fn)`, from any coroutine of the controller, starts fn on
-- the loop and waits for its values without blocking the other coroutines.
-- @module paykit.loop.cqueues
-- @usage
--   local cqueues = require "cqueues"
--   local cq, lp = cqueues.new(), paykit.loop.new()
--   local pk = require "paykit.loop.cqueues"
--   pk.attach(lp, cq)
--   cq:wrap(function() local r, err = pk.call(lp, function() return gw:status(ref) end) end)
--   assert(cq:loop())
local cqueues = require "cqueues"
local condition = require "cqueues.condition"

local _M = {}

--- Plugs a paykit loop into a cqueues controller.
-- The driver coroutine ends once `:close()` is called (and no call is pending any more), or
-- once the paykit loop is closed.
-- @tparam loop lp a `paykit.loop`
-- @tparam table cq the controller (`cqueues.new()`)
-- @treturn table a driver with `:close()`
function _M.attach(lp, cq)
  local started = condition.new()
  local closed = false
  local ready = { pollfd = lp:fd(), events = "r" } -- a pollable: the loop's descriptor
  local wakeup = function() started:signal() end
  lp.wakeup = wakeup
  cq:wrap(function()
    -- a closed paykit loop (its descriptor gone) ends the driver too
    while not lp.closed and (not closed or lp:pending() > 0) do
      if lp:pending() == 0 then
        cqueues.poll(started)
      else
        local t = lp:timeout()
        if t then cqueues.poll(ready, started, t) else cqueues.poll(ready, started) end
        if not lp.closed then lp:step(0) end
      end
    end
    -- the descriptor is closed (or is about to be) with the loop: the controller forgets it, so
    -- a later loop whose descriptor gets the same number is polled afresh
    cq:cancel(ready.pollfd)
  end)
  return {
    close = function()
      closed = true
      if lp.wakeup == wakeup then lp.wakeup = nil end
      started:signal()
    end,
  }
end

--- Runs fn on the loop and waits (yielding to the controller) for what it returns.
-- @tparam loop lp a `paykit.loop` attached to the running controller
-- @tparam function fn as for `loop:start`
-- @return what fn returned (or nil, the error it raised)
function _M.call(lp, fn)
  local done = condition.new()
  local h = lp:start(fn, function() done:signal() end)
  while not h:done() do done:wait() end
  return h:result()
end

return _M
