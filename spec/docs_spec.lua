-- The API reference (LDoc, config.ld) documents every public function: each module's
-- function-valued fields (callable tables too) and the methods of its instances. The spec
-- builds the reference into a temporary directory with `ldoc -q -d DIR .` and looks for the
-- entry anchor of every name on the module's page. Names starting with "_" are private.
-- It also checks that the Markdown was rendered (discount), that public modules come before
-- the C core and the internals, and that the getting-started topic is there.

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- os.execute's result on Lua 5.1/LuaJIT (a number) and 5.4 (ok, "exit", code) alike.
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = type(v) == "table" and getmetatable(v) or nil
  return mt ~= nil and type(mt) == "table" and type(mt.__call) == "function"
end

-- Public function-valued fields of a table, sorted.
local function functions_of(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and callable(v) then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

-- Public methods of an instance: functions in its metatable and in the metatable's __index
-- table, but not those that are the module's own fields (checked as module functions).
local function methods_of(obj, mod)
  local mt = getmetatable(obj)
  assert(type(mt) == "table", "the instance has no metatable")
  local seen, names = {}, {}
  local function add(t)
    for _, k in ipairs(functions_of(t)) do
      if not seen[k] and not (type(mod) == "table" and rawget(mod, k) == t[k]) then
        seen[k] = true; names[#names + 1] = k
      end
    end
  end
  add(mt)
  if type(mt.__index) == "table" then add(mt.__index) end
  table.sort(names)
  return names
end

-- An LDoc entry anchor: <a name = "NAME"></a>. A module function is NAME or, when it is a
-- method defined on the module table, Type:NAME; an instance method is exactly Type:NAME.
local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end
local function anchor(html, pattern) return html:find('<a name%s*=%s*"' .. pattern .. '"%s*>') ~= nil end
local function has_function(html, name)
  return anchor(html, escape(name)) or anchor(html, "[%w_]+[:.]" .. escape(name))
end
local function has_method(html, type_name, name)
  return anchor(html, escape(type_name .. ":" .. name))
end

-- Every public module, and how to make the instances (with the LDoc type name their methods
-- are documented under) whose methods must be documented too. Dummy credentials: no network.
local MODULES = {
  { "paykit" },
  { "paykit.errors" },
  { "paykit.money" },
  { "paykit.redact" },
  { "paykit.http", instances = function(m) return { { m.new {}, "transport" } } end },
  { "paykit.gateway", instances = function(m) return { { m.seen(4), "Seen" } } end },
  { "paykit.batch" },
  { "paykit.loop", instances = function(m)
    local lp = m.new()
    return { { lp, "Loop" }, { lp:start(function() end), "Handle" } }
  end },
  { "paykit.loop.luv" },
  { "paykit.loop.cqueues" },
  { "paykit.cosocket" },
  { "paykit.url" },
  { "paykit.runtime" },
  { "paykit.metrics", instances = function(m) return { { m.new(), "Collector" } } end },
  { "paykit.redis", instances = function(m) return { { assert(m.new {}), "Client" } } end },
  { "paykit.store" },
  { "paykit.store.memory" },
  { "paykit.store.redis" },
  { "paykit.store.shdict" },
  { "paykit.journal.wrap" },
  { "paykit.journal.sweep" },
  { "paykit.journal", instances = function(m) return { { assert(m.new {}), "Journal" } } end },
  { "paykit.providers.moka", instances = function(m)
    return { { assert(m.new { dealer_code = "dummy", username = "dummy", password = "dummy" }), "Moka" } }
  end },
  { "paykit.providers.moka_codes" },
  { "paykit.providers.moka_checks" },
  { "paykit.providers.moka_request" },
  { "paykit.providers.mocopay_sign" },
  { "paykit.providers.mocopay_request" },
  { "paykit.providers.mocopay_wire" },
  { "paykit.providers.mocopay_notice" },
  { "paykit.providers.mocopay", instances = function(m)
    return { { assert(m.new { api_key = "dummy", api_secret = "dummy", base_url = "http://127.0.0.1:9" }), "Client" } }
  end },
  { "paykit.providers.zippy", instances = function(m)
    return { { assert(m.new { consumer_key = "dummy", consumer_secret = "dummy", notice_keys = { [0] = "dummy" },
      base_url = "http://127.0.0.1:9" }), "Zippy" } }
  end },
  { "paykit.providers.zippy_oauth" },
  { "paykit.providers.zippy_fields" },
  { "paykit.providers.zippy_notice" },
  { "paykit.providers.zippy_request" },
  { "paykit.kit" },
  { "paykit.kit.checks" },
  { "paykit.kit.json" },
  { "paykit.kit.signature" },
  { "paykit.kit.options" },
  { "paykit.kit.registry" },
  { "paykit.kit.wire" },
  { "paykit.kit.ops" },
  { "paykit.kit.notify", instances = function(m) return { { m.memory(), "Memory" } } end },
  { "paykit.core", instances = function(m)
    return { { m.http_client {}, "client" }, { m.http_response_parser {}, "parser" }, { m.redis_reader(), "reader" },
             { m.http_loop(), "loop" }, { m.wire_loop(), "wireloop" } }
  end, cleanup = function(list) for _, o in ipairs(list) do o[1]:close() end end },
}

describe("the API reference (LDoc)", function()
  local dir

  setup(function()
    local p = assert(io.popen("mktemp -d /tmp/paykit-docs.XXXXXX"))
    dir = p:read("*l")
    p:close()
    assert.truthy(dir and dir ~= "", "mktemp -d failed")
    -- Run from the repository root (busted's working directory), where config.ld is.
    local ok = run("ldoc -q -d " .. sh_quote(dir) .. " . > " .. sh_quote(dir .. "/ldoc.log") .. " 2>&1")
    assert.is_true(ok, "ldoc failed:\n" .. tostring(read(dir .. "/ldoc.log")))
  end)

  teardown(function()
    if dir and dir:find("^/tmp/paykit%-docs%.") then run("rm -rf " .. sh_quote(dir)) end
  end)

  it("builds an index listing every public module", function()
    local index = read(dir .. "/index.html")
    assert.is_string(index, "no index.html")
    for _, spec in ipairs(MODULES) do
      assert.truthy(index:find('href="modules/' .. escape(spec[1]) .. '%.html"'),
        spec[1] .. " is not in the index")
    end
  end)

  it("lists every Lua module under lua/paykit (but the sandbox) in the index", function()
    local index = read(dir .. "/index.html")
    local p = io.popen("cd lua && find paykit -name '*.lua' -not -path 'paykit/sandbox/*' | sort")
    local n = 0
    for file in p:lines() do
      n = n + 1
      local name = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      assert.truthy(index:find('href="modules/' .. escape(name) .. '%.html"'), name .. " is not in the index")
    end
    p:close()
    assert.is_true(n > 0)
  end)

  it("lists the public modules first, then the C core, then the internals", function()
    local index = read(dir .. "/index.html")
    local content = index:sub((assert(index:find('<div id="content">', 1, true))))
    local function at(s) return assert(content:find(s, 1, true), s .. " not in the index") end
    local modules, c_core, internals = at("<h2>Modules</h2>"), at("<h2>C core</h2>"), at("<h2>Internals</h2>")
    assert.is_true(modules < c_core and c_core < internals)
    local function row(name) return at('href="modules/' .. name .. '.html"') end
    for _, public in ipairs { "paykit", "paykit.providers.moka", "paykit.errors", "paykit.metrics", "paykit.runtime" } do
      assert.is_true(row(public) > modules and row(public) < c_core, public .. " is not among the public modules")
    end
    assert.is_true(row("paykit.core") > c_core and row("paykit.core") < internals)
    for _, internal in ipairs { "paykit.http", "paykit.cosocket", "paykit.gateway", "paykit.url" } do
      assert.is_true(row(internal) > internals, internal .. " is not among the internals")
    end
  end)

  it("has the getting-started page as a topic, first in the menu", function()
    local page = read(dir .. "/topics/getting-started.md.html")
    assert.is_string(page, "no topics/getting-started.md.html")
    assert.truthy(page:find("<h1>Getting started</h1>", 1, true))
    assert.truthy(page:find("<pre", 1, true), "its code blocks are not rendered as code")
    local index = read(dir .. "/index.html")
    local nav = index:match('<div id="navigation">(.-)<div id="content">')
    local topic = assert(nav:find("topics/getting-started.md.html", 1, true), "not in the menu")
    assert.is_true(topic < nav:find("<h2>Modules</h2>", 1, true))
  end)

  it("renders the Markdown of every page: no literal backticks or escaped code tags", function()
    local p = io.popen("cd " .. sh_quote(dir) .. " && ls index.html topics/*.html modules/*.html")
    local n = 0
    for file in p:lines() do
      n = n + 1
      local html = read(dir .. "/" .. file)
      local text = html:gsub("<pre.-</pre>", ""):gsub("<[^>]*>", "")
      assert.is_nil(text:find("`", 1, true), file .. " shows a literal backtick")
      assert.is_nil(text:find("&lt;/?code&gt;"), file .. " shows an escaped <code> tag")
    end
    p:close()
    assert.is_true(n > 20, "too few pages: " .. n)
    -- `code` became <code>, and a word with underscores stayed one word
    local http = read(dir .. "/modules/paykit.http.html")
    assert.truthy(http:find("<code>connect_timeout</code>", 1, true))
    assert.is_nil(http:find("connect<em>", 1, true))
  end)

  it("renders parameter lists and option lists as lists", function()
    local core = read(dir .. "/modules/paykit.core.html")
    local params = core:match('<a name = "hmac"></a>.-<h3>Parameters:</h3>%s*<ul>(.-)</ul>')
    assert.is_string(params, "paykit.core hmac has no parameter list")
    local n = 0
    for _ in params:gmatch('<li><span class="parameter">') do n = n + 1 end
    assert.is_true(n >= 3, "hmac's parameters are not list items")
    local http = read(dir .. "/modules/paykit.http.html")
    local opts = http:match('<a name = "new"></a>.-<h3>Parameters:</h3>(.-)</dd>')
    local items = 0
    for _ in opts:gmatch("<li><code>") do items = items + 1 end
    assert.is_true(items >= 5, "paykit.http.new's options are not a list")
  end)

  it("leaves the sandbox out of the reference", function()
    local index = read(dir .. "/index.html")
    assert.is_string(index, "no index.html")
    assert.is_nil(index:find("paykit.sandbox", 1, true))
  end)

  for _, spec in ipairs(MODULES) do
    local name = spec[1]
    it("documents every public function of " .. name, function()
      local mod = require(name)
      local html = read(dir .. "/modules/" .. name .. ".html")
      assert.is_string(html, name .. " has no page in the reference (no LDoc module comment?)")
      local names = type(mod) == "table" and functions_of(mod) or {}
      local missing = {}
      for _, fn in ipairs(names) do
        if not has_function(html, fn) then missing[#missing + 1] = name .. "." .. fn end
      end
      local checked = #names
      if spec.instances then
        local list = spec.instances(mod)
        for _, inst in ipairs(list) do
          local obj, type_name = inst[1], inst[2]
          for _, m in ipairs(methods_of(obj, mod)) do
            if not has_method(html, type_name, m) then missing[#missing + 1] = name .. " " .. type_name .. ":" .. m end
            checked = checked + 1
          end
        end
        if spec.cleanup then spec.cleanup(list) end
      end
      assert.is_true(checked > 0, name .. ": no public function found to check")
      assert.is_true(#missing == 0, "undocumented in the reference: " .. table.concat(missing, ", "))
    end)
  end
end)
