-- The layering of lua/paykit (issue 9, item 8): the graph of the modules' literal requires
-- (`require "x"`, `require("x")`, `pcall(require, "x")`, wherever they are: at the top of a
-- file or inside a function, since a require inside a function is the same dependency taken
-- later) has no cycle, every paykit module required exists, and the sandbox's simulators own
-- their own rules: nothing under paykit.sandbox reaches, directly or through other modules,
-- the client's code that decides what is valid (the providers, the kit, paykit.gateway,
-- paykit.money), except paykit.kit.registry, which only names the installed providers and
-- their simulators so that the sandbox serves them.
local luasrc = require "spec.support.luasrc"

-- The graph: module -> {required module -> first line}, over the files under lua/paykit.
local function build_graph()
  local graph, files, dynamic = {}, {}, {}
  for _, path in ipairs(luasrc.files("lua/paykit")) do
    local name = luasrc.module_name(path)
    files[name] = path
    local found, dyn = luasrc.requires(luasrc.read(path))
    local edges = {}
    for _, r in ipairs(found) do
      if edges[r.name] == nil and r.name ~= name then edges[r.name] = r.line end
    end
    graph[name] = edges
    dynamic[name] = dyn
  end
  return graph, files, dynamic
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The first cycle found (a list of modules, the first repeated at the end), or nil. Only edges
-- between modules of the graph count.
local function find_cycle(graph)
  local state, stack = {}, {}
  local function visit(m)
    state[m] = "open"
    stack[#stack + 1] = m
    for _, d in ipairs(sorted_keys(graph[m])) do
      if graph[d] then
        if state[d] == "open" then
          local cycle, on = {}, false
          for _, s in ipairs(stack) do
            if s == d then on = true end
            if on then cycle[#cycle + 1] = s end
          end
          cycle[#cycle + 1] = d
          return cycle
        elseif state[d] == nil then
          local c = visit(d)
          if c then return c end
        end
      end
    end
    stack[#stack] = nil
    state[m] = "done"
    return nil
  end
  for _, m in ipairs(sorted_keys(graph)) do
    if state[m] == nil then
      local c = visit(m)
      if c then return c end
    end
  end
  return nil
end

-- "a -> b (a.lua:12) -> ..." for a cycle.
local function show(cycle, graph, files)
  local parts = { cycle[1] }
  for i = 2, #cycle do
    parts[#parts + 1] = "-> " .. cycle[i] .. " (" .. files[cycle[i - 1]] .. ":" .. graph[cycle[i - 1]][cycle[i]] .. ")"
  end
  return table.concat(parts, " ")
end

-- Every module reachable from m, each with the path that reaches it (m -> ... -> it).
local function reach(graph, m)
  local paths, queue = { [m] = { m } }, { m }
  local i = 1
  while queue[i] do
    local cur = queue[i]
    i = i + 1
    for _, d in ipairs(sorted_keys(graph[cur] or {})) do
      if graph[d] and not paths[d] then
        local p = {}
        for k, v in ipairs(paths[cur]) do p[k] = v end
        p[#p + 1] = d
        paths[d] = p
        queue[#queue + 1] = d
      end
    end
  end
  return paths
end

-- The client code a simulator must not use to decide what is valid.
local function client_code(name)
  if name == "paykit.kit.registry" then return false end
  return name:find("^paykit%.providers%.") ~= nil or name == "paykit.kit" or name:find("^paykit%.kit%.") ~= nil
    or name == "paykit.gateway" or name == "paykit.money"
end

-- The sandbox modules of a graph, and every path from one of them to client code.
local function sandbox_violations(graph)
  local modules, bad = 0, {}
  for _, m in ipairs(sorted_keys(graph)) do
    if m == "paykit.sandbox" or m:find("^paykit%.sandbox%.") then
      modules = modules + 1
      local paths = reach(graph, m)
      for _, d in ipairs(sorted_keys(paths)) do
        if client_code(d) then bad[#bad + 1] = table.concat(paths[d], " -> ") end
      end
    end
  end
  return bad, modules
end

describe("the spec's own reading of sources", function()
  it("finds every literal form of require and ignores comments", function()
    local found, dyn = luasrc.requires(table.concat({
      'local a = require "m.a"',
      "local b = require('m.b')",
      'local ok, c = pcall(require, "m.c")',
      'local d = require ( "m.d" ).x',
      '-- local e = require "m.e"',
      '--[[ local f = require "m.f" ]]',
      '--[==[ a ]] require "m.g" ]==]',
      'local s = "-- not a comment" .. require"m.h"',
      'local t = [[ -- a long string ]] local i = require "m.i"',
      "local mod = require(name)",
      "local r = require",
    }, "\n"))
    local names = {}
    for _, r in ipairs(found) do names[#names + 1] = r.name .. ":" .. r.line end
    assert.same({ "m.a:1", "m.b:2", "m.c:3", "m.d:4", "m.h:8", "m.i:9" }, names)
    assert.same({ 10 }, dyn)
  end)

  it("finds a cycle, and the modules in it in order", function()
    local g = { a = { b = 1 }, b = { c = 2 }, c = { a = 3, x = 4 }, d = { a = 1 } }
    assert.same({ "a", "b", "c", "a" }, find_cycle(g))
    g.c.a = nil
    assert.is_nil(find_cycle(g))
    assert.same({ "e", "e" }, find_cycle { e = { e = 1 } })
  end)

  it("tells client code from what a simulator may use", function()
    assert.is_true(client_code("paykit.providers.moka_request"))
    assert.is_true(client_code("paykit.kit.checks"))
    assert.is_true(client_code("paykit.kit"))
    assert.is_true(client_code("paykit.gateway"))
    assert.is_false(client_code("paykit.kit.registry"))
    assert.is_false(client_code("paykit.core"))
    assert.is_false(client_code("paykit.sandbox.util"))
  end)

  it("finds a simulator that reaches client code through another module", function()
    local g = { ["paykit.sandbox.x"] = { ["paykit.url"] = 1, ["paykit.kit.registry"] = 2 },
                ["paykit.url"] = { ["paykit.kit.checks"] = 3 }, ["paykit.kit.checks"] = {}, ["paykit.kit.registry"] = {} }
    assert.same({ "paykit.sandbox.x -> paykit.url -> paykit.kit.checks" }, (sandbox_violations(g)))
    g["paykit.url"] = {}
    assert.same({}, (sandbox_violations(g)))
  end)
end)

describe("the layers of lua/paykit", function()
  local graph, files, dynamic = build_graph()

  it("reads every module under lua/paykit", function()
    for _, m in ipairs { "paykit", "paykit.http", "paykit.cosocket", "paykit.runtime", "paykit.kit",
                         "paykit.kit.registry", "paykit.providers.moka", "paykit.sandbox", "paykit.sandbox.zippy" } do
      assert.is_table(graph[m], m)
    end
    assert.is_number(graph["paykit.http"]["paykit.runtime"], "paykit.http's require of paykit.runtime (its line)")
  end)

  it("has no require cycle", function()
    local cycle = find_cycle(graph)
    assert(cycle == nil, cycle and ("require cycle: " .. show(cycle, graph, files)))
  end)

  it("puts paykit.runtime below the transports: it requires neither http nor cosocket", function()
    for _, m in ipairs { "paykit.runtime" } do
      local r = reach(graph, m)
      assert.is_nil(r["paykit.http"], m .. " reaches paykit.http")
      assert.is_nil(r["paykit.cosocket"], m .. " reaches paykit.cosocket")
    end
    assert.is_not_nil(graph["paykit.cosocket"]["paykit.runtime"], "paykit.cosocket takes its phases from paykit.runtime")
  end)

  it("requires only paykit modules that exist (a file under lua/paykit, or the C core)", function()
    for _, m in ipairs(sorted_keys(graph)) do
      for d, line in pairs(graph[m]) do
        if d == "paykit" or d:find("^paykit%.") then
          assert(graph[d] or d == "paykit.core", files[m] .. ":" .. line .. " requires " .. d .. ", which does not exist")
        end
      end
    end
  end)

  it("keeps the sandbox's simulators off the client's code (only the registry's list of names)", function()
    local bad, checked = sandbox_violations(graph)
    assert(#bad == 0, "the sandbox reaches client code: " .. table.concat(bad, "; "))
    assert.is_true(checked >= 8, "sandbox modules found: " .. checked)
    -- the registry names modules; it loads none of them
    for d in pairs(reach(graph, "paykit.kit.registry")) do
      assert(d == "paykit.kit.registry", "paykit.kit.registry requires " .. d)
    end
  end)

  it("loads the sandbox's simulators by name in one place only (paykit.sandbox.util)", function()
    for _, m in ipairs(sorted_keys(dynamic)) do
      if m == "paykit.sandbox" or m:find("^paykit%.sandbox%.") then
        if m == "paykit.sandbox.util" then
          assert.equal(1, #dynamic[m], "paykit.sandbox.util's dynamic requires")
        else
          assert.same({}, dynamic[m], m .. " requires a module by a computed name")
        end
      end
    end
  end)
end)
