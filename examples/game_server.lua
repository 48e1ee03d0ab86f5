-- A game server in plain Lua: a 20 ms tick that keeps simulating the world while players buy
-- items (Moka, 3D Secure), their browsers return, Moka's notifications arrive over HTTP and
-- pending purchases are reconciled. paykit runs on a paykit.loop stepped once per tick with
-- step(0), which never waits; the notification listener is a non-blocking socket polled in
-- the same tick. The game itself is examples/game_server_common.lua; each item is granted
-- once by the payment journal, in memory or, with REDIS_PORT, on Redis shared by several
-- game servers (run two: only the first, with NOTIFY=1, receives the notifications).
--
--   bin/paykit-sandbox start && lua5.4 examples/game_server.lua [N] [PORT]   (N purchases, default 40)
--   REDIS_PORT=6379 NAME=a NOTIFY=1 lua5.4 examples/game_server.lua 40 18871 &
--   REDIS_PORT=6379 NAME=b lua5.4 examples/game_server.lua 40 18872
local root = arg and arg[0] and arg[0]:match("^(.*)/examples/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/examples/?.lua;" .. package.path
package.cpath = root .. "/build/" .. (rawget(_G, "jit") and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath

local socket = require "socket"
local core = require "paykit.core"
local Game = require "game_server_common"

local N, PORT = tonumber(arg[1]) or 40, tonumber(arg[2]) or 18870
local game = Game.new { name = os.getenv("NAME") or "game", purchases = N, redis_port = tonumber(os.getenv("REDIS_PORT")) }

-- The notification listener: accepts and reads without ever waiting (timeout 0).
local server = assert(socket.bind("127.0.0.1", PORT))
server:settimeout(0)
local conns = {} -- socket -> bytes read so far
local function serve()
  local c = server:accept()
  while c do c:settimeout(0); conns[c] = ""; c = server:accept() end
  for s, buf in pairs(conns) do
    local data, err, part = s:receive(8192)
    buf = buf .. (data or part or "")
    local head, body = buf:match("^(.-\r\n)\r\n(.*)$")
    local len = head and tonumber(head:lower():match("content%-length:%s*(%d+)"))
    if len and #body >= len then
      local reply = game:notification(body:sub(1, len))
      s:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #reply .. "\r\nConnection: close\r\n\r\n" .. reply)
      s:close(); conns[s] = nil
    elseif err == "closed" then s:close(); conns[s] = nil
    else conns[s] = buf end
  end
end

if os.getenv("NOTIFY") ~= "0" then game:listen_notifications("http://127.0.0.1:" .. PORT .. "/moka-notify") end

local TICK, worst = 0.020, 0
local next_tick = core.monotonic()
while not game:finished() do
  game:tick()        -- the world
  serve()            -- notifications
  game.lp:step(0)    -- every paykit call in flight: never waits
  local late = core.monotonic() - next_tick
  if late > worst then worst = late end
  next_tick = next_tick + TICK
  local rest = next_tick - core.monotonic()
  if rest > 0 then core.sleep(rest) end
end
os.exit(game:summary(worst * 1000) and 0 or 1)
