--- paykit.loop.luv: a paykit loop driven by libuv (Debian's lua-luv).
--
-- One uv poll on the loop's descriptor (`loop:fd()`, readable when a transfer can go on) and
-- one uv timer for `loop:timeout()` (libcurl's timers and retry backoffs); both step the loop
-- with `step(0)` and are re-armed after every step and every `loop:start`. While no call is
-- pending neither is active, so `uv.run()` returns when the game's own handles are done.
-- @module paykit.loop.luv
-- @usage
--   local uv = require "luv"
--   local lp = paykit.loop.new()
--   local driver = require("paykit.loop.luv").attach(lp)
--   lp:start(function() return gw:status(ref) end, function(r, err) ... end)
--   uv.run()
local _M = {}

--- Plugs a paykit loop into libuv.
-- @tparam loop lp a `paykit.loop`
-- @tparam[opt] table uv the luv module (default `require "luv"`)
-- @treturn table a driver with `:close()` (closes its uv handles; libuv finishes closing them
--   on its next turn, so run the uv loop once more before the program ends)
function _M.attach(lp, uv)
  uv = uv or require "luv"
  local poll = uv.new_poll(lp:fd())
  local timer = uv.new_timer()
  local polling, closed = false, false
  local arm
  local function tick()
    lp:step(0)
    arm()
  end
  arm = function()
    if closed then return end
    timer:stop()
    if lp:pending() == 0 then
      if polling then poll:stop(); polling = false end
      return
    end
    if not polling then poll:start("r", tick); polling = true end
    local t = lp:timeout()
    if t then timer:start(math.ceil(t * 1000), 0, tick) end
  end
  lp.wakeup = arm
  arm()
  return {
    close = function()
      if closed then return end
      closed = true
      lp.wakeup = nil
      poll:close()
      timer:close()
    end,
  }
end

return _M
