-- The rockspec installs every Lua module of the tree, and only files that exist.
describe("rockspec", function()
  local function load_rockspec()
    local env = {}
    local chunk
    local f = assert(io.open("rockspec/paykit-scm-1.rockspec")); local src = f:read("*a"); f:close()
    if setfenv then chunk = assert(loadstring(src)); setfenv(chunk, env)
    else chunk = assert(load(src, "rockspec", "t", env)) end
    chunk()
    return env
  end

  local function lua_files()
    local p = io.popen("cd lua && find . -name '*.lua' | sort")
    local list = {}
    for line in p:lines() do list[#list + 1] = line:gsub("^%./", "") end
    p:close()
    return list
  end

  it("lists every Lua file under lua/ as a module", function()
    local spec = load_rockspec()
    local listed = {}
    for name, src in pairs(spec.build.modules) do
      if type(src) == "string" then listed[src] = name end
    end
    local files = lua_files()
    assert.is_true(#files > 0, "no Lua file found under lua/")
    for _, file in ipairs(files) do
      assert.is_not_nil(listed["lua/" .. file], "rockspec does not install lua/" .. file)
    end
  end)

  it("names only files that exist", function()
    local spec = load_rockspec()
    for name, src in pairs(spec.build.modules) do
      local files = type(src) == "string" and { src } or src.sources
      for _, file in ipairs(files) do
        local f = io.open(file)
        assert.is_not_nil(f, name .. ": " .. file .. " is missing")
        if f then f:close() end
      end
    end
  end)

  it("builds the C module from every file in csrc/", function()
    local spec = load_rockspec()
    local sources = {}
    for _, s in ipairs(spec.build.modules["paykit.core"].sources) do sources[s] = true end
    local p = io.popen("ls csrc/*.c")
    local n = 0
    for file in p:lines() do
      n = n + 1
      assert.is_true(sources[file] == true, file .. " is not in the rockspec")
    end
    p:close()
    assert.is_true(n > 0, "no C file found in csrc/")
  end)
end)
