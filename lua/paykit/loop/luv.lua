--- paykit.loop.luv: a paykit loop driven by libuv (Debian's lua-luv).
--
-- One uv poll on the loop's descriptor (`loop:fd()`, readable when a transfer can go on) and
-- one uv timer for `loop:timeout()` (libcurl's timers and retry backoffs); both step the loop
-- with `step(0)` and are re-armed after every step and every `loop:start`. While no call is
-- pending neither is active, so `uv.run()` returns when the game's own handles are done; when
-- the paykit loop is closed, the driver closes its handles itself.
--
-- luv (1.44, Debian's) keeps its default loop in its module table and frees it with that table,
-- while its per-state context still points at it: once `package.loaded.luv` was cleared (busted
-- does this between spec files) and the table collected, the next `require "luv"` works on freed
-- memory and crashes. `attach` keeps the luv module it uses reachable (from the registry) for as
-- long as the Lua state lives, so the loop paykit's handles are on is never freed under them.
-- @module paykit.loop.luv
-- @usage
--   local uv = require "luv"
--   local lp = paykit.loop.new()
--   local driver = require("paykit.loop.luv").attach(lp)
--   lp:start(function() return gw:status(ref) end, function(r, err) ... end)
--   uv.run()
local _M = {}

-- The luv modules attach was given, kept for the life of the Lua state (see above).
local ANCHOR = "paykit.loop.luv: luv modules in use"
local function keep(uv)
  local reg = debug.getregistry()
  local kept = reg[ANCHOR]
  if not kept then kept = {}; reg[ANCHOR] = kept end
  kept[uv] = true
end

--- Plugs a paykit loop into libuv.
-- @tparam loop lp a `paykit.loop`
-- @tparam[opt] table uv the luv module (default `require "luv"`)
-- @treturn table a driver with `:close()` (closes its uv handles; libuv finishes closing them
--   on its next turn, so run the uv loop once more before the program ends). Closing the paykit
--   loop closes the driver too.
function _M.attach(lp, uv)
  uv = uv or require "luv"
  keep(uv)
  local poll = uv.new_poll(lp:fd())
  local timer = uv.new_timer()
  local polling, closed = false, false
  local arm, close
  local function tick()
    if not lp.closed then lp:step(0) end
    arm()
  end
  arm = function()
    if closed then return end
    if lp.closed then return close() end -- the loop's descriptor is gone: nothing to watch
    timer:stop()
    if lp:pending() == 0 then
      if polling then poll:stop(); polling = false end
      return
    end
    if not polling then poll:start("r", tick); polling = true end
    local t = lp:timeout()
    if t then timer:start(math.ceil(t * 1000), 0, tick) end
  end
  close = function()
    if closed then return end
    closed = true
    if lp.wakeup == arm then lp.wakeup = nil end
    poll:close()
    timer:close()
  end
  lp.wakeup = arm
  arm()
  return { close = close }
end

return _M
