-- Starts and stops a real nginx (with its Lua module) on 127.0.0.1: the sandbox, the specs'
-- servers, the benchmark's and the examples'. Each server gets its own prefix (its config,
-- pid and logs) under M.state_dir() .. "/<name>" (or vars.PREFIX).
--
--   local nginx = require "paykit.sandbox.nginx"   -- spec.support.nginx is the same module
--   local srv = nginx.start("transport", [[ server { listen 127.0.0.1:${PORT}; ... } ]], {PORT = 18780})
--   ... srv:stop()
--
-- The http{} block, module loading, pid and log paths are written here; the caller gives
-- what goes inside http{}. ${NAME} placeholders are filled from vars plus ROOT, PREFIX,
-- LUA_PATH and LUA_CPATH (the paths that make paykit's Lua code and LuaJIT core loadable).
--
-- Two layouts (M.layout()):
--  * a checkout (this file is <root>/lua/paykit/sandbox/nginx.lua next to <root>/csrc):
--    Lua code from <root>/lua, the LuaJIT core from <root>/build/luajit (`make build`),
--    state under <root>/build/run;
--  * installed by LuaRocks (<tree>/share/lua/<v>/paykit/sandbox/nginx.lua): Lua code from
--    <tree>/share/lua/<v>, the LuaJIT core the Lua 5.4 rock ships
--    (<tree>/lib/lua/<v>/paykit/luajit/paykit/core.so) or, failing that, the LuaJIT rock's in
--    the same tree (<tree>/lib/lua/5.1/paykit/core.so); state under $XDG_RUNTIME_DIR/paykit-sandbox,
--    else ${TMPDIR:-/tmp}/paykit-sandbox-<uid>.
-- M.set_state_dir(dir) (paykit-sandbox --state-dir) or PAYKIT_SANDBOX_STATE_DIR choose the
-- state directory in both. nginx is started without LUA_PATH / LUA_CPATH / LUA_INIT in its
-- environment, so a Lua 5.4 path (e.g. from `luarocks path`) never reaches nginx's LuaJIT.
local M = {}

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end -- Lua 5.1 / LuaJIT
  return ok and code == 0
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function pwd()
  local p = io.popen("pwd"); local d = p:read("*l"); p:close()
  return d
end

-- This file's absolute path.
local function this_file()
  local src = debug.getinfo(1, "S").source
  local file = src:match("^@(.*)$") or ""
  if file:sub(1, 1) ~= "/" then file = pwd() .. "/" .. file:gsub("^%./", "") end
  return file
end

local layout
--- Where paykit's Lua code, its LuaJIT core and the default state live (see the top).
-- Returns {kind = "checkout"|"installed", root = (checkout), lua_dir, luajit_dir (a cpath
-- directory holding paykit/core.so for LuaJIT, nil when none was found), tried (the
-- directories looked at)}.
function M.layout()
  if layout then return layout end
  local file = this_file()
  local root = file:match("^(.*)/lua/paykit/sandbox/nginx%.lua$")
  if root and exists(root .. "/csrc/core.c") then
    layout = { kind = "checkout", root = root, lua_dir = root .. "/lua", luajit_dir = root .. "/build/luajit",
               tried = { root .. "/build/luajit" } }
    return layout
  end
  local lua_dir = file:match("^(.*)/paykit/sandbox/nginx%.lua$") or pwd()
  local lib_dir = lua_dir:gsub("/share/lua/([^/]+)$", "/lib/lua/%1")
  local tried = {}
  local env = os.getenv("PAYKIT_SANDBOX_LUAJIT_CPATH_DIR")
  if env and env ~= "" then tried[#tried + 1] = env end
  tried[#tried + 1] = lib_dir .. "/paykit/luajit"                          -- shipped by the 5.4 rock
  tried[#tried + 1] = (lib_dir:gsub("/lib/lua/[^/]+$", "/lib/lua/5.1"))    -- the LuaJIT rock
  local found
  for _, dir in ipairs(tried) do
    if exists(dir .. "/paykit/core.so") then found = dir; break end
  end
  layout = { kind = "installed", lua_dir = lua_dir, luajit_dir = found, tried = tried }
  return layout
end

-- The source tree this file lives in; outside a checkout, the working directory (for the
-- examples and benchmarks, which run from a checkout).
function M.root()
  local l = M.layout()
  return l.root or pwd()
end

local state_dir
--- Sets the directory under which each server keeps its prefix (nil: the default).
function M.set_state_dir(dir) state_dir = dir end

local function uid()
  local p = io.popen("id -u"); local u = p and p:read("*l"); if p then p:close() end
  return u or "unknown"
end

--- The directory under which each server keeps its prefix (see the top).
function M.state_dir()
  if state_dir and state_dir ~= "" then return state_dir end
  local env = os.getenv("PAYKIT_SANDBOX_STATE_DIR")
  if env and env ~= "" then return env end
  local l = M.layout()
  if l.kind == "checkout" then return l.root .. "/build/run" end
  local xdg = os.getenv("XDG_RUNTIME_DIR")
  if xdg and xdg ~= "" then return xdg .. "/paykit-sandbox" end
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  return tmp .. "/paykit-sandbox-" .. uid()
end

-- Makes dir (mode 0755 when new) and refuses one that belongs to somebody else: the state
-- directory holds the pid file that stop() signals.
local function own_dir(dir)
  if not sh("mkdir -p -m 0755 " .. shell_quote(dir) .. " 2>/dev/null") then
    error("nginx: cannot create the state directory " .. dir, 0)
  end
  if not sh("test -O " .. shell_quote(dir)) then
    error("nginx: the state directory " .. dir .. " belongs to another user (choose one with --state-dir)", 0)
  end
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

local function nginx_bin()
  local env = os.getenv("PAYKIT_NGINX")
  if env and env ~= "" then return env end
  if sh("command -v nginx >/dev/null 2>&1") then return "nginx" end
  return "/usr/sbin/nginx" -- Debian's, outside a non-root PATH
end

local SYSTEM_LUA = "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;"

--- Lua paths for code running inside nginx: paykit's Lua code and its LuaJIT core first.
-- With root, the checkout at root; without, M.layout(). Raises when no LuaJIT build of
-- paykit.core is there.
function M.lua_paths(root)
  if root then
    return root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;" .. SYSTEM_LUA,
           root .. "/build/luajit/?.so;;"
  end
  local l = M.layout()
  if l.kind == "checkout" then return M.lua_paths(l.root) end
  if not l.luajit_dir then
    error("nginx: no LuaJIT build of paykit.core (nginx's Lua module is LuaJIT) in " .. table.concat(l.tried, ", ") ..
      ": reinstall the Lua 5.4 rock where LuaJIT's headers are (libluajit2-5.1-dev), or install the LuaJIT rock " ..
      "into the same tree (luarocks --lua-version=5.1 --tree <tree> make ...)", 0)
  end
  return l.lua_dir .. "/?.lua;" .. l.lua_dir .. "/?/init.lua;" .. SYSTEM_LUA, l.luajit_dir .. "/?.so;;"
end

function M.config(http_body, vars)
  if vars.USER_DIRECTIVE == nil then
    local copy = { USER_DIRECTIVE = "" }
    for k, v in pairs(vars) do copy[k] = v end
    vars = copy
  end
  return fill([[
load_module ${MODULES}/ndk_http_module.so;
load_module ${MODULES}/ngx_http_lua_module.so;
${USER_DIRECTIVE}
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
  local prefix = vars.PREFIX
  if not prefix then
    own_dir(M.state_dir())
    prefix = M.state_dir() .. "/" .. name
  end
  local lp, lcp = M.lua_paths(vars.ROOT)
  -- Installed, started by root: the workers run as root too (instead of nginx's default
  -- "nobody"), since a tree such as /root/.luarocks or a mktemp -d one is not readable by
  -- nobody. The servers listen on 127.0.0.1 only. (A checkout keeps nginx's default.)
  local user = ""
  if M.layout().kind == "installed" and uid() == "0" then user = "user root root;" end
  local all = { ROOT = root, PREFIX = prefix, LUA_PATH = lp, LUA_CPATH = lcp, USER_DIRECTIVE = user,
                MODULES = M.module_dir, WORKERS = 1, LOG_LEVEL = "warn" }
  for k, v in pairs(vars) do all[k] = v end
  local srv = setmetatable({ name = name, prefix = prefix }, { __index = M })
  srv:stop() -- a leftover from an interrupted run
  assert(sh("mkdir -p " .. shell_quote(prefix .. "/logs") .. " " .. shell_quote(prefix .. "/tmp")))
  write(prefix .. "/nginx.conf", M.config(http_body, all))
  -- no Lua search paths from our environment inside nginx's LuaJIT (";;" in its paths)
  local cmd = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_1 -u LUA_CPATH_5_1 -u LUA_INIT " .. nginx_bin()
           .. " -p " .. shell_quote(prefix) .. " -c " .. shell_quote(prefix .. "/nginx.conf")
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
  return setmetatable({ name = name, prefix = prefix or (M.state_dir() .. "/" .. name) }, { __index = M })
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
