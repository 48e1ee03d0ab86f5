-- LuaRocks installs paykit offline, from the versioned rockspec, into fresh trees for Lua 5.4
-- and for LuaJIT 2.1 (--lua-version=5.1); each loads from /tmp, outside the checkout; the C
-- core is built under build/rock/, never into the source tree; `luarocks pack` (make dist)
-- makes a source rock that installs too; `luarocks test` runs the specs through busted.
-- (Runs in the Lua 5.4 pass only: it drives both runtimes itself.)
local ROCKSPEC = "rockspec/paykit-0.1.0-1.rockspec"

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("*a"); p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local function exists(path)
  local f = io.open(path); if f then f:close() end
  return f ~= nil
end

-- What git sees in the checkout outside build/ (untracked and ignored files included).
local function outside_build()
  local _, out = sh("git status --porcelain --ignored --untracked-files=all")
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local file = line:sub(4)
    if not file:find("^build/") and not line:find("^rc=") and not file:find("node_modules/") then list[#list + 1] = line end
  end
  table.sort(list)
  return table.concat(list, "\n")
end

local RUNTIMES = {
  { lua_version = "5.4", interpreter = "lua5.4" },
  { lua_version = "5.1", interpreter = "luajit" },
}

describe("luarocks make of the versioned rockspec", function()
  if _VERSION ~= "Lua 5.4" or jit then
    pending("installs for Lua 5.4 and LuaJIT (runs in the Lua 5.4 pass)")
    return
  end

  local base, before
  lazy_setup(function()
    local p = io.popen("mktemp -d /tmp/paykit-install.XXXXXX"); base = p:read("*l"); p:close()
    assert.truthy(base and base ~= "")
    before = outside_build()
  end)
  lazy_teardown(function()
    if base and base:find("^/tmp/paykit%-install%.") and not os.getenv("PAYKIT_KEEP_INSTALL") then sh("rm -rf " .. base) end
  end)

  for _, rt in ipairs(RUNTIMES) do
    local function tree() return base .. "/tree-" .. rt.interpreter end

    it("installs the C core and every module for " .. rt.interpreter .. " into a fresh tree with --deps-mode=none", function()
      -- the command README gives
      local rc, out = sh("luarocks --lua-version=" .. rt.lua_version .. " --tree " .. tree() .. " make " .. ROCKSPEC .. " --deps-mode=none")
      assert.are.equal(0, rc, out)
      assert.is_true(exists(tree() .. "/lib/lua/" .. rt.lua_version .. "/paykit/core.so"), out)
      assert.is_true(exists(tree() .. "/share/lua/" .. rt.lua_version .. "/paykit/providers/moka.lua"))
      assert.is_true(exists(tree() .. "/bin/paykit-sandbox"))
    end)

    it("loads paykit.core and the providers under " .. rt.interpreter .. " from /tmp, from the tree", function()
      local rc, out = sh("cd /tmp && eval \"$(luarocks --lua-version=" .. rt.lua_version .. " --tree " .. tree() .. " path)\" && " ..
        rt.interpreter .. " -e 'local c = require \"paykit.core\"; local p = require \"paykit\"; " ..
        "print(\"CORE=\" .. package.searchpath(\"paykit.core\", package.cpath)); " ..
        "print(\"LUA=\" .. package.searchpath(\"paykit\", package.path)); " ..
        "print(c.digest(\"sha256\", \"abc\", \"hex\")); print(\"VERSION=\" .. p.VERSION); " ..
        "print(tostring(p.zippy{consumer_key = \"k\", consumer_secret = \"s\", notice_keys = {[0] = \"n\"}, base_url = \"https://z.example\"} ~= nil))'")
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("CORE=" .. tree() .. "/lib/lua/" .. rt.lua_version .. "/paykit/core.so", 1, true), out)
      assert.truthy(out:find("LUA=" .. tree() .. "/share/lua/" .. rt.lua_version .. "/paykit.lua", 1, true), out)
      assert.truthy(out:find("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 1, true), out)
      assert.truthy(out:find("VERSION=0.1.0\ntrue", 1, true), out)
    end)
  end

  it("ships a LuaJIT core for the sandbox in the Lua 5.4 rock", function()
    local rc, out = sh("cd /tmp && luajit -e 'package.cpath = \"" .. base .. "/tree-lua5.4/lib/lua/5.4/paykit/luajit/?.so\"; " ..
      "print(require(\"paykit.core\").digest(\"sha256\", \"abc\", \"hex\"))'")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("ba7816bf", 1, true), out)
  end)

  it("leaves no build output in the source tree", function()
    local rc, out = sh("ls csrc/*.o paykit/core.so 2>/dev/null | wc -l")
    assert.are.equal(0, rc)
    assert.are.equal("0", out:match("^(%d+)"), "build outputs in the checkout: " .. out)
    assert.are.equal(before, outside_build())
  end)

  it("packs a source rock with make dist that installs into a fresh tree", function()
    local rc, out = sh("make dist")
    assert.are.equal(0, rc, out)
    assert.is_true(exists("build/dist/paykit-0.1.0-1.src.rock"), out)
    rc, out = sh("cd /tmp && luarocks --lua-version=5.4 --tree " .. base .. "/tree-src install " ..
      os.getenv("PWD") .. "/build/dist/paykit-0.1.0-1.src.rock --deps-mode=none")
    assert.are.equal(0, rc, out)
    assert.is_true(exists(base .. "/tree-src/lib/lua/5.4/paykit/core.so"), out)
  end)

  it("runs the specs with luarocks test once busted is a rock of the tree", function()
    -- No rocks server here: the busted rock is a wrapper around Debian's busted (the same
    -- busted a `luarocks install busted` would give), so that LuaRocks finds it as a rock.
    local shim = base .. "/busted-rock"
    local rc, out = sh("mkdir -p " .. shim .. " && cd " .. shim .. " && printf '#!/bin/sh\\nexec lua5.4 /usr/bin/busted \"$@\"\\n' > busted && " ..
      "chmod +x busted && printf 'rockspec_format = \"3.0\"\\npackage = \"busted\"\\nversion = \"2.1.1-1\"\\n" ..
      "source = { url = \"file:///usr/bin/busted\" }\\n" ..
      "build = { type = \"builtin\", modules = {}, install = { bin = { busted = \"busted\" } } }\\n' > busted-2.1.1-1.rockspec && " ..
      "luarocks --lua-version=5.4 --tree " .. base .. "/tree-lua5.4 make busted-2.1.1-1.rockspec --deps-mode=none")
    assert.are.equal(0, rc, out)
    -- LuaRocks 3.8 looks for test dependencies in its configured trees and a --project-tree,
    -- not in --tree
    rc, out = sh("luarocks --lua-version=5.4 --project-tree " .. base .. "/tree-lua5.4 test " .. ROCKSPEC ..
      " -- spec/money_spec.lua spec/url_spec.lua")
    assert.are.equal(0, rc, out)
    assert.truthy(("\n" .. out):find("\nok 1 ", 1, true), out)   -- TAP: the rock task of .busted
    assert.is_nil(out:find("\nnot ok ", 1, true), out)
    assert.truthy(out:find("\n1%.%.%d+"), out)
  end)

  -- The installed sandbox: from a directory of its own under /tmp, with the tree's paths in
  -- the environment (LUA_CPATH for Lua 5.4, which nginx's LuaJIT must never see).
  describe("the installed paykit-sandbox", function()
    local port = tonumber(os.getenv("PAYKIT_TEST_INSTALL_PORT")) or 18797
    local function in_tmp(lua_version, cmd)
      return sh("mkdir -p " .. base .. "/cwd && cd " .. base .. "/cwd && eval \"$(luarocks --lua-version=" .. lua_version ..
        " --tree " .. base .. "/tree-" .. (lua_version == "5.4" and "lua5.4" or "luajit") .. " path)\" && " .. cmd)
    end
    local function sandbox(lua_version, args)
      local tree = base .. "/tree-" .. (lua_version == "5.4" and "lua5.4" or "luajit")
      return in_tmp(lua_version, tree .. "/bin/paykit-sandbox " .. args .. " --port " .. port .. " --state-dir " .. base .. "/state")
    end
    after_each(function()
      sandbox("5.4", "stop")
      sandbox("5.1", "stop")
    end)

    it("makes a Moka 3D purchase against the sandbox started from /tmp", function()
      local rc, out = sandbox("5.4", "start")
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("state in " .. base .. "/state", 1, true), out)
      local script = base .. "/buy.lua"
      local f = assert(io.open(script, "w"))
      f:write([[
local paykit = require "paykit"
local core = require "paykit.core"
local cjson = require "cjson.safe"
local base = "http://127.0.0.1:" .. arg[1]
local gw = assert(paykit.moka { dealer_code = "1730", username = "sandbox", password = "sandbox-pass",
  base_url = base .. "/moka", retry = false })
local r = assert(gw:purchase { amount = "27.50", currency = "TL", reference = "install-" .. os.time(),
  client_ip = "203.0.113.7", return_url = "https://shop.example/return",
  card = { holder = "Ali Yilmaz", number = "4111111111111111", exp_month = "09", exp_year = "2031", cvc = "123" } })
assert(r.status == "redirect", r.status)
local trx = r.redirect_url:match("threeDTrxCode=([%w%-]+)")
local client = core.http_client { timeout = 10000 }
local res = assert(client:request { method = "POST", url = base .. "/moka/_sandbox/3d/complete",
  headers = { ["Content-Type"] = "application/json" },
  body = cjson.encode { threeDTrxCode = trx, action = "approve" } })
local done = assert(gw:complete(cjson.decode(res.body).Fields, r.keep))
print("STATUS=" .. done.status .. " AMOUNT=" .. done.amount)
]])
      f:close()
      rc, out = in_tmp("5.4", "lua5.4 " .. script .. " " .. port)
      local log = io.open(base .. "/state/sandbox-" .. port .. "/logs/error.log")
      assert.are.equal(0, rc, out .. (log and log:read("*a") or ""))
      if log then log:close() end
      assert.truthy(out:find("STATUS=paid AMOUNT=27.50", 1, true), out)
      -- its state is where it was told, and nothing was written in the working directory
      assert.is_true(exists(base .. "/state/sandbox-" .. port .. "/nginx.conf"))
      local conf = io.open(base .. "/state/sandbox-" .. port .. "/nginx.conf"):read("*a")
      assert.truthy(conf:find(base .. "/tree-lua5.4/lib/lua/5.4/paykit/luajit/?.so", 1, true), conf)
      assert.is_nil(conf:find("/build/", 1, true), conf)
      rc, out = sh("ls -A " .. base .. "/cwd")
      assert.are.equal(0, rc, out)
      assert.are.equal("", (out:gsub("rc=%d+%s*$", "")), "the sandbox wrote into its working directory")
    end)

    it("keeps its state under $XDG_RUNTIME_DIR/paykit-sandbox without --state-dir", function()
      local tree = base .. "/tree-lua5.4"
      local rc, out = sh("mkdir -p " .. base .. "/xdg " .. base .. "/cwd && cd " .. base .. "/cwd && env -i PATH=/usr/bin:/bin:/usr/sbin " ..
        "XDG_RUNTIME_DIR=" .. base .. "/xdg " .. tree .. "/bin/paykit-sandbox start --port " .. port)
      assert.are.equal(0, rc, out)
      assert.is_true(exists(base .. "/xdg/paykit-sandbox/sandbox-" .. port .. "/nginx.pid"), out)
      rc, out = sh("env -i PATH=/usr/bin:/bin:/usr/sbin XDG_RUNTIME_DIR=" .. base .. "/xdg " .. tree .. "/bin/paykit-sandbox status --port " .. port)
      assert.are.equal(0, rc, out)
      rc, out = sh("env -i PATH=/usr/bin:/bin:/usr/sbin XDG_RUNTIME_DIR=" .. base .. "/xdg " .. tree .. "/bin/paykit-sandbox stop --port " .. port)
      assert.are.equal(0, rc, out)
      assert.is_false(exists(base .. "/xdg/paykit-sandbox/sandbox-" .. port .. "/nginx.pid"))
    end)

    it("serves README's OpenResty nginx.conf with the LuaJIT rock, calling the sandbox over a cosocket", function()
      local rc, out = sandbox("5.4", "start")
      assert.are.equal(0, rc, out)
      local f = assert(io.open("README.md")); local readme = f:read("*a"); f:close()
      local section = assert(readme:match("\n## OpenResty\n(.-)\n## "), "README has no OpenResty section")
      local conf = assert(section:match("```nginx\n(http {.-\n})\n```"), "no nginx http{} block in README's OpenResty section")
      local nginx_port = port + 1
      -- exactly that block, with this test's tree, ports and resolver
      conf = conf:gsub("/opt/paykit", base .. "/tree-luajit"):gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. nginx_port)
                 :gsub("127%.0%.0%.1:8790", "127.0.0.1:" .. port):gsub("<your DNS server>", "127.0.0.1")
      local prefix = base .. "/readme-nginx"
      sh("mkdir -p " .. prefix .. "/logs")
      local main = table.concat({
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
        "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
        "user root root;", -- the test's tree is under a mktemp -d (mode 0700) of root's
        "pid " .. prefix .. "/nginx.pid;", "error_log " .. prefix .. "/logs/error.log warn;",
        "events { worker_connections 64; }", conf, "" }, "\n")
      f = assert(io.open(prefix .. "/nginx.conf", "w")); f:write(main); f:close()
      -- started the way README says: without a Lua 5.4 path in nginx's environment
      rc, out = sh("env -u LUA_PATH -u LUA_CPATH nginx -p " .. prefix .. " -c " .. prefix .. "/nginx.conf")
      assert.are.equal(0, rc, out)
      local ok, body
      for _ = 1, 100 do
        rc, body = sh("curl -s http://127.0.0.1:" .. nginx_port .. "/pay/status?ref=readme-unknown")
        if rc == 0 and body:find("%S") then ok = true; break end
        os.execute("sleep 0.05")
      end
      sh("kill -QUIT $(cat " .. prefix .. "/nginx.pid)")
      local log = io.open(prefix .. "/logs/error.log"); local errors = log and log:read("*a") or ""; if log then log:close() end
      assert.is_true(ok, tostring(body) .. errors)
      -- the sandbox's own answer about an unknown payment, through paykit
      assert.truthy(body:find("paykit provider error [moka.", 1, true) or body:find("^%a+\n"), body .. errors)
      assert.is_nil(errors:find("[error]", 1, true), errors)
    end)

    it("starts from the LuaJIT tree with the LuaJIT rock's core", function()
      local rc, out = sandbox("5.1", "start")
      assert.are.equal(0, rc, out)
      rc, out = sh("curl -s http://127.0.0.1:" .. port .. "/")
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("/moka", 1, true), out)
      local conf = io.open(base .. "/state/sandbox-" .. port .. "/nginx.conf"):read("*a")
      assert.truthy(conf:find(base .. "/tree-luajit/lib/lua/5.1/?.so", 1, true), conf)
    end)
  end)
end)
