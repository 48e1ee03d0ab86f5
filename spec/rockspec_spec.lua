-- The rockspecs install every Lua module of the tree and only files that exist; the versioned
-- one agrees with the library's version; both pass `luarocks lint`; .busted loads the core
-- built for the runtime busted runs under; the browser package's test script exists.
local ROCKSPECS = { "rockspec/paykit-scm-1.rockspec", "rockspec/paykit-0.1.0-1.rockspec" }

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a"); p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a"); f:close()
  return s
end

local function load_rockspec(file)
  local env = {}
  local src = assert(read(file), file)
  local chunk
  if setfenv then chunk = assert(loadstring(src)); setfenv(chunk, env)
  else chunk = assert(load(src, "rockspec", "t", env)) end
  chunk()
  return env
end

local function lua_files()
  local p = io.popen("cd lua && find . -name '*.lua' | sort")
  local list = {}
  for line in p:lines() do list[#list + 1] = (line:gsub("^%./", "")) end
  p:close()
  return list
end

-- file -> module name, the way LuaRocks maps lua/ to share/lua/<v>/
local function module_of(file)
  return (file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
end

describe("rockspec", function()
  for _, file in ipairs(ROCKSPECS) do
    describe(file, function()
      it("lists every Lua file under lua/ as the module of its path", function()
        local spec = load_rockspec(file)
        local listed = {}
        for name, src in pairs(spec.build.install.lua) do listed[src] = name end
        local files = lua_files()
        assert.is_true(#files > 0, "no Lua file found under lua/")
        for _, f in ipairs(files) do
          assert.are.equal(module_of(f), listed["lua/" .. f], "rockspec does not install lua/" .. f .. " as its module")
        end
      end)

      it("names only files that exist", function()
        local spec = load_rockspec(file)
        local n = 0
        for _, group in pairs(spec.build.install) do
          for name, src in pairs(group) do
            n = n + 1
            assert.is_string(read(src), name .. ": " .. src .. " is missing")
          end
        end
        assert.is_string(read(spec.build.makefile), spec.build.makefile .. " is missing")
        assert.is_true(n > 0)
      end)

      it("passes luarocks lint", function()
        local rc, out = sh("luarocks lint " .. file)
        assert.are.equal(0, rc, out)
      end)

      it("runs busted for luarocks test", function()
        local spec = load_rockspec(file)
        assert.are.equal("busted", spec.test.type)
        local busted = assert(read(".busted"))
        for _, flag in ipairs(spec.test.flags or {}) do
          local task = flag:match("^%-%-run=(.*)$")
          if task then assert.truthy(busted:find("\n%s*" .. task .. "%s*="), ".busted has no task " .. task) end
        end
      end)
    end)
  end

  it("gives both rockspecs the same build and dependencies", function()
    local scm, rel = load_rockspec(ROCKSPECS[1]), load_rockspec(ROCKSPECS[2])
    local function dump(v, out)
      out = out or {}
      if type(v) ~= "table" then out[#out + 1] = tostring(v); return out end
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for _, k in ipairs(keys) do out[#out + 1] = k .. "="; dump(v[k] == nil and v[tonumber(k)] or v[k], out) end
      return out
    end
    for _, key in ipairs { "build", "dependencies", "external_dependencies", "test", "test_dependencies" } do
      assert.are.equal(table.concat(dump(scm[key]), " "), table.concat(dump(rel[key]), " "), key .. " differs")
    end
  end)

  it("versions the release rockspec as the library, the C core and the changelog do", function()
    local rel = load_rockspec(ROCKSPECS[2])
    local v = rel.version:match("^(.-)%-%d+$")
    assert.are.equal("paykit-" .. rel.version .. ".rockspec", ROCKSPECS[2]:match("[^/]+$"))
    assert.are.equal(require("paykit").VERSION, v)
    assert.are.equal(require("paykit.core")._VERSION, v)
    assert.truthy(read("CHANGELOG.md"):find("\n## " .. v:gsub("%.", "%%.") .. " ", 1), "CHANGELOG.md has no section " .. v)
    assert.are.equal("v" .. v, rel.source.tag)
    assert.truthy(rel.source.url:find("paykit-" .. v .. ".tar.gz", 1, true))
    assert.are.equal("paykit-" .. v, rel.source.dir)
  end)

  it("ships the MIT license the rockspec names", function()
    local rel = load_rockspec(ROCKSPECS[2])
    assert.are.equal("MIT", rel.description.license)
    local text = assert(read("LICENSE"), "no LICENSE")
    assert.truthy(text:find("^MIT License"))
    assert.truthy(text:find("paykit authors", 1, true))
  end)
end)

describe(".busted", function()
  -- a spec of its own, run by plain busted from the checkout's root, prints where
  -- paykit.core came from
  local probe
  lazy_setup(function()
    local p = io.popen("mktemp -d /tmp/paykit-busted.XXXXXX"); local dir = p:read("*l"); p:close()
    probe = dir .. "/probe_spec.lua"
    local f = assert(io.open(probe, "w"))
    f:write([[
it("loads paykit.core", function()
  require "paykit.core"
  local where = package.loaded["paykit.core"] and (package.searchpath and package.searchpath("paykit.core", package.cpath))
  print("RUNTIME=" .. (jit and "luajit" or _VERSION) .. " CORE=" .. tostring(where))
end)
]])
    f:close()
  end)
  lazy_teardown(function() if probe then sh("rm -rf " .. probe:match("^(.*)/")) end end)

  it("runs plain busted under LuaJIT when the default lua is Lua 5.1 (never loads a core into plain 5.1)", function()
    local _, version = sh("lua -v")
    if not version:find("Lua 5.1", 1, true) then return pending("the default lua here is not Lua 5.1") end
    local rc, out = sh("busted " .. probe)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("RUNTIME=luajit CORE=./build/luajit/paykit/core.so", 1, true), out)
  end)

  for _, case in ipairs { { "lua5.4", "Lua 5.4" }, { "luajit", "luajit" } } do
    it("loads the core built for " .. case[1] .. " under busted --lua=" .. case[1], function()
      local rc, out = sh("busted --lua=" .. case[1] .. " " .. probe)
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("RUNTIME=" .. case[2] .. " CORE=./build/" .. case[1] .. "/paykit/core.so", 1, true), out)
    end)
  end
end)

describe("spec/browser/package.json", function()
  it("has a test script that names files that exist", function()
    local pkg = assert(read("spec/browser/package.json"))
    local script = pkg:match('"test"%s*:%s*"([^"]*)"')
    assert.is_string(script, "no test script")
    local named = 0
    for word in script:gmatch("%S+") do
      if word:find("%.m?js$") or word == "run" then
        named = named + 1
        assert.is_string(read("spec/browser/" .. word), "the test script names spec/browser/" .. word .. ", which does not exist")
      end
    end
    assert.is_true(named > 0, "the test script names no file: " .. script)
  end)
end)
