-- The whole Moka 3D start (bench/providers.lua's call) against a local nginx answering the
-- canned 3D start (bench/fixtures.lua), one keep-alive connection, in this process:
--   nsrun <name> lua5.4 bench/layer_wire.lua [N] [ROOT]     (ROOT: the tree whose paykit runs;
--   default .)  Prints CPU µs per call (os.clock over N calls, default 3000) for the default
--   transport. Starts its own nginx (1 worker) on 127.0.0.1:18797 and stops it.
local root = arg[2] or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;./?.lua;" .. package.path
local is_jit = type(jit) == "table"
package.cpath = root .. "/build/" .. (is_jit and "luajit" or "lua5.4") .. "/?.so;" .. package.cpath
local n = tonumber(arg[1] or 3000)
local F = require "bench.fixtures"
local nginx = require "paykit.sandbox.nginx"
local PORT = 18797
local srv = nginx.start("layer_wire_" .. (is_jit and "jit" or "54"), [[
  server {
    listen 127.0.0.1:${PORT};
    access_log off;
    keepalive_requests 1000000;
    location / { default_type application/json; return 200 ']] .. F.moka_answer .. [['; }
  }
]], { PORT = PORT })
local ok, err = pcall(function()
  local call = require("bench.providers").make("moka", "http://127.0.0.1:" .. PORT)
  for _ = 1, 200 do assert(call(), "the answer did not map") end
  collectgarbage("collect")
  local c0 = os.clock()
  for _ = 1, n do call() end
  io.write(string.format("%s (%s): whole Moka 3D start over http, %d calls: %.1f us CPU per call\n",
    is_jit and "LuaJIT" or _VERSION, root, n, (os.clock() - c0) * 1e6 / n))
end)
srv:stop()
assert(ok, err)
