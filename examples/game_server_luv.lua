-- examples/game_server.lua on libuv (Debian's lua-luv): the same game (game_server_common.lua),
-- its 20 ms tick a uv timer, the notification listener a uv TCP server, and every paykit call
-- on a paykit.loop driven by paykit.loop.luv (a uv poll on the loop's descriptor and a uv
-- timer): nothing ever blocks the uv loop.
--
--   bin/paykit-sandbox start && lua5.4 examples/game_server_luv.lua [N] [PORT]
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local uv = require "luv"
local Game = require "game_server_common"

local N, PORT = tonumber(arg[1]) or 40, tonumber(arg[2]) or 18870
local game = Game.new { name = os.getenv("NAME") or "game-luv", purchases = N, redis_port = tonumber(os.getenv("REDIS_PORT")) }
local driver = require("paykit.loop.luv").attach(game.lp)

-- The notification listener: one request per connection, answered once its body is in.
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", PORT))
assert(server:listen(64, function()
  local c = uv.new_tcp()
  server:accept(c)
  local buf = ""
  c:read_start(function(err, data)
    if err or not data then c:close(); return end
    buf = buf .. data
    local head, body = buf:match("^(.-\r\n)\r\n(.*)$")
    local len = head and tonumber(head:lower():match("content%-length:%s*(%d+)"))
    if len and #body >= len then
      c:read_stop()
      local reply = game:notification(body:sub(1, len))
      c:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #reply .. "\r\nConnection: close\r\n\r\n" .. reply,
        function() c:close() end)
    end
  end)
end))

if os.getenv("NOTIFY") ~= "0" then game:listen_notifications("http://127.0.0.1:" .. PORT .. "/moka-notify") end

local worst, last, ok = 0, uv.hrtime(), false
local ticker = uv.new_timer()
ticker:start(20, 20, function()
  local now = uv.hrtime()
  local late = (now - last) / 1e6 - 20
  if late > worst then worst = late end
  last = now
  game:tick()
  if game:finished() then
    ticker:close(); server:close(); driver:close()
    ok = game:summary(worst)
  end
end)
uv.run()
os.exit(ok and 0 or 1)
