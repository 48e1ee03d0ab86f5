-- LuaRocks installs paykit for Lua 5.4 offline, and it loads outside the source tree.
describe("luarocks make", function()
  local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("*a"); p:close()
    return tonumber(out:match("rc=(%d+)%s*$")), out
  end

  if _VERSION ~= "Lua 5.4" or jit then
    pending("installs for Lua 5.4 (runs in the Lua 5.4 pass)")
    return
  end

  local tree
  lazy_setup(function()
    local p = io.popen("pwd"); local root = p:read("*l"); p:close()
    tree = root .. "/build/luarocks-tree"
    sh("rm -rf " .. tree)
  end)

  it("installs the C core and every module for Lua 5.4 into a fresh tree with --deps-mode=none", function()
    local _, version = sh("luarocks config lua_version")
    assert.are.equal("5.4", version:match("^(%S+)"), "LuaRocks must default to Lua 5.4 (make deps sets it)")
    -- the command README gives, into a fresh tree
    local rc, out = sh("luarocks --tree=" .. tree .. " make rockspec/paykit-scm-1.rockspec --deps-mode=none")
    assert.are.equal(0, rc, out)
    local f = io.open(tree .. "/lib/lua/5.4/paykit/core.so")
    assert.is_not_nil(f, "core.so installed")
    if f then f:close() end
  end)

  it("loads paykit.core and the providers from outside the source tree", function()
    local rc, out = sh("cd /tmp && eval \"$(luarocks --lua-version=5.4 --tree=" .. tree .. " path)\" && " ..
      "lua5.4 -e 'local c = require \"paykit.core\"; local p = require \"paykit\"; " ..
      "assert(package.searchpath(\"paykit.core\", package.cpath):find(\"luarocks%-tree\")); " ..
      "print(c.digest(\"sha256\", \"abc\", \"hex\")); print(p.VERSION); " ..
      "print(tostring(p.zippy{consumer_key = \"k\", consumer_secret = \"s\", base_url = \"https://z.example\"} ~= nil))'")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 1, true), out)
    assert.truthy(out:find("true", 1, true), out)
  end)

  lazy_teardown(function()
    sh("rm -rf paykit") -- LuaRocks' builtin build leaves paykit/core.so in the working directory
  end)

  it("installs the sandbox command", function()
    local f = io.open(tree .. "/bin/paykit-sandbox")
    assert.is_not_nil(f)
    if f then f:close() end
  end)
end)
