-- Starts and stops a real nginx (with its Lua module) on 127.0.0.1: the sandbox, the specs'
-- servers, the benchmark's and the examples'. Each server gets its own prefix under
-- build/run/<name> (or vars.PREFIX), its own config and logs.
--
--   local nginx = require "paykit.sandbox.nginx"   -- spec.support.nginx is the same module
--   local srv = nginx.start("transport", [[ server { listen 127.0.0.1:${PORT}; ... } ]], {PORT = 18780})
--   ... srv:stop()
--
-- The http{} block, module loading, pid and log paths are written here; the caller gives
-- what goes inside http{}. ${NAME} placeholders are filled from vars plus ROOT, PREFIX,
-- LUA_PATH and LUA_CPATH (the paths that make paykit's Lua code and LuaJIT core loadable).
local M = {}

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end -- Lua 5.1 / LuaJIT
  return ok and code == 0
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The source tree this file lives in (lua/paykit/sandbox/nginx.lua -> the tree's root),
-- falling back to the working directory.
function M.root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/lua/paykit/sandbox/nginx%.lua$")
  if dir and dir ~= "" then
    if dir:sub(1, 1) ~= "/" then
      local p = io.popen("cd " .. shell_quote(dir) .. " && pwd"); dir = p:read("*l"); p:close()
    end
    return dir
  end
  local p = io.popen("pwd"); local d = p:read("*l"); p:close()
  return d
end

local function fill(text, vars)
  return (text:gsub("%${([%w_]+)}", function(k)
    local v = vars[k]
    if v == nil then error("nginx template: no value for ${" .. k .. "}", 0) end
    return tostring(v)
  end))
end

local function write(path, data)
  local f = assert(io.open(path, "wb")); f:write(data); f:close()
end

local function port_open(port)
  return sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null")
end

local function sleep(s) sh("sleep " .. s) end

M.module_dir = os.getenv("PAYKIT_NGINX_MODULES") or "/usr/lib/nginx/modules"

-- Lua paths for code running inside nginx: this tree's lua/ and build/luajit/ first.
function M.lua_paths(root)
  return root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;",
         root .. "/build/luajit/?.so;;"
end

function M.config(http_body, vars)
  return fill([[
load_module ${MODULES}/ndk_http_module.so;
load_module ${MODULES}/ngx_http_lua_module.so;
worker_processes ${WORKERS};
daemon on;
pid ${PREFIX}/nginx.pid;
error_log ${PREFIX}/logs/error.log ${LOG_LEVEL};
events { worker_connections 1024; }
http {
  access_log ${PREFIX}/logs/access.log;
  client_body_temp_path ${PREFIX}/tmp/body;
  proxy_temp_path ${PREFIX}/tmp/proxy;
  fastcgi_temp_path ${PREFIX}/tmp/fastcgi;
  uwsgi_temp_path ${PREFIX}/tmp/uwsgi;
  scgi_temp_path ${PREFIX}/tmp/scgi;
  lua_package_path "${LUA_PATH}";
  lua_package_cpath "${LUA_CPATH}";
]] .. http_body .. "\n}\n", vars)
end

-- Start nginx; waits until every port in vars.PORTS (or vars.PORT) accepts connections.
function M.start(name, http_body, vars)
  vars = vars or {}
  local root = vars.ROOT or M.root()
  local prefix = vars.PREFIX or (root .. "/build/run/" .. name)
  local lp, lcp = M.lua_paths(root)
  local all = { ROOT = root, PREFIX = prefix, LUA_PATH = lp, LUA_CPATH = lcp,
                MODULES = M.module_dir, WORKERS = 1, LOG_LEVEL = "warn" }
  for k, v in pairs(vars) do all[k] = v end
  local srv = setmetatable({ name = name, prefix = prefix }, { __index = M })
  srv:stop() -- a leftover from an interrupted run
  assert(sh("mkdir -p " .. shell_quote(prefix .. "/logs") .. " " .. shell_quote(prefix .. "/tmp")))
  write(prefix .. "/nginx.conf", M.config(http_body, all))
  local cmd = "nginx -p " .. shell_quote(prefix) .. " -c " .. shell_quote(prefix .. "/nginx.conf")
           .. " -e " .. shell_quote(prefix .. "/logs/error.log")
  if not sh(cmd .. " >" .. shell_quote(prefix .. "/logs/start.log") .. " 2>&1") then
    local f = io.open(prefix .. "/logs/start.log"); local why = f and f:read("*a") or ""; if f then f:close() end
    error("nginx " .. name .. " did not start: " .. why, 0)
  end
  local ports = vars.PORTS or { vars.PORT }
  for _, port in ipairs(ports) do
    local up = false
    for _ = 1, 100 do
      if port_open(port) then up = true; break end
      sleep(0.05)
    end
    if not up then srv:stop(); error("nginx " .. name .. " is not listening on " .. port, 0) end
  end
  return srv
end

-- A handle for a server started earlier (by another process), to stop it.
function M.handle(name, prefix)
  return setmetatable({ name = name, prefix = prefix or (M.root() .. "/build/run/" .. name) }, { __index = M })
end

function M:running()
  local pid = self:pid()
  return pid ~= nil and sh("kill -0 " .. pid .. " 2>/dev/null")
end

function M:pid()
  local f = io.open(self.prefix .. "/nginx.pid")
  if not f then return nil end
  local pid = tonumber(f:read("*l")); f:close()
  return pid
end

function M:stop()
  local pid = self:pid()
  if not pid then return end
  sh("kill -QUIT " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not sh("kill -0 " .. pid .. " 2>/dev/null") then break end
    sleep(0.05)
  end
  sh("kill -KILL " .. pid .. " 2>/dev/null")
  os.remove(self.prefix .. "/nginx.pid")
end

-- The error log, for a failing spec's message.
function M:error_log()
  local f = io.open(self.prefix .. "/logs/error.log")
  if not f then return "" end
  local s = f:read("*a"); f:close()
  return s
end

return M
