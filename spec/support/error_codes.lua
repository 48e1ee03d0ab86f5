-- The error codes paykit's sources can produce, collected from them (see
-- spec/error_table_spec.lua for what is read).
local luasrc = require "spec.support.luasrc"

local BUILDERS = { validation = 2, config = 2, signature = 1, transport = 1, timeout = 1 }

local function is_code(s) return s:find("^[%l][%w_]*[%.%w_]*%*?$") ~= nil and #s <= 80 end

-- The position of the code parameter in a parameter list, or nil.
local function code_param(params)
  local i = 0
  for p in params:gmatch("[%a_][%w_]*") do
    i = i + 1
    if p == "code" then return i end
  end
end

-- Whether the body of a function starting at pos (up to the next function) builds a paykit error.
local function builds_error(code, pos)
  local next_fn = code:find("%f[%w_]function%f[^%w_]", pos) or #code
  return code:sub(pos, next_fn):find("errors%.%a+%s*[%({]") ~= nil
end

local function sources()
  local out = {}
  for _, path in ipairs(luasrc.files("lua/paykit")) do
    if not path:find("^lua/paykit/sandbox/") then
      out[#out + 1] = { path = path, code = luasrc.strip_comments(luasrc.read(path)) }
    end
  end
  return out
end

-- The modules a file's locals name: `local x = require "m"` -> x = m; `_M` and `M` name
-- the file's own module.
local function aliases(path, code)
  local own = luasrc.module_name(path)
  local out = { _M = own, M = own }
  for name, mod in code:gmatch("local%s+([%a_][%w_]*)%s*=%s*require%s*%(?%s*[\"']([%w_.]+)[\"']") do out[name] = mod end
  return out
end

-- code -> first place it was found ("file:line")
local function collect_lua()
  local found = {}
  local files = sources()
  -- module functions with a code parameter that build an error: helpers[module][name] = position
  local helpers, helper_names = {}, {}
  for _, f in ipairs(files) do
    local mod = luasrc.module_name(f.path)
    for name, params, body in f.code:gmatch("function%s+[%a_][%w_]*%.([%a_][%w_]*)%s*%(([^)]*)%)()") do
      local i = code_param(params)
      if i and builds_error(f.code, body) then
        helpers[mod] = helpers[mod] or {}
        helpers[mod][name] = i
        helper_names[#helper_names + 1] = name
      end
    end
  end
  for _, f in ipairs(files) do
    local path, code = f.path, f.code
    local function add(text, pos)
      local _, n = code:sub(1, pos):gsub("\n", "")
      for _, s in ipairs(luasrc.strings(text)) do
        if is_code(s) and not found[s] then found[s] = path .. ":" .. (n + 1) end
      end
    end
    -- code = <expr>
    for pos, after in code:gmatch("()%f[%w_]code%s*=%s*()") do
      if code:sub(after, after) ~= "=" then add(luasrc.items(code, after, true)[1], pos) end
    end
    -- kind, code, text = "provider", "server_error", ...: the value in code's place
    for targets, rest in code:gmatch("\n%s*local%s+([%a_][%w_]*%s*,[%w_,%s]-)%s*=%s*([^\n]+)") do
      local k = code_param(targets)
      if k then add(luasrc.items(rest .. ")", 1)[k] or "", code:find(rest, 1, true) or 1) end
    end
    for targets, rest in code:gmatch("\n%s*([%a_][%w_]*%s*,[%w_,%s]-)%s*=%s*([^\n]+)") do
      local k = code_param(targets)
      if k then add(luasrc.items(rest .. ")", 1)[k] or "", code:find(rest, 1, true) or 1) end
    end
    -- callers[pattern of the called name] = position of its code argument
    local callers = {}
    for b, i in pairs(BUILDERS) do callers["errors%." .. b] = i end
    for name, b in code:gmatch("local%s+([%a_][%w_]*)%s*=%s*errors%.(%a+)%f[^%w_]") do
      if BUILDERS[b] then callers[name] = BUILDERS[b] end
    end
    -- the module helpers, through the locals naming their modules, and locals naming them
    -- (`local same, forged = request.same, request.forged`)
    local names = aliases(path, code)
    for alias, mod in pairs(names) do
      for name, i in pairs(helpers[mod] or {}) do callers[alias .. "%." .. name] = i end
    end
    for list, values in code:gmatch("local%s+([%a_][%w_,%s]-)%s*=%s*([^\n]+)") do
      local ln, vals = {}, {}
      for n in list:gmatch("[%a_][%w_]*") do ln[#ln + 1] = n end
      for v in (values .. ","):gmatch("%s*([^,]-)%s*,") do vals[#vals + 1] = v end
      for k, n in ipairs(ln) do
        local alias, fn = (vals[k] or ""):match("^([%a_][%w_]*)%.([%a_][%w_]*)$")
        local mod = alias and names[alias]
        if mod and helpers[mod] and helpers[mod][fn] then callers[n] = helpers[mod][fn] end
      end
    end
    -- local helpers with a code parameter that build an error (or call a helper that does)
    for name, params, body in code:gmatch("local%s+function%s+([%a_][%w_]*)%s*%(([^)]*)%)()") do
      local i = code_param(params)
      local builds = builds_error(code, body)
      if i and not builds then
        local next_fn = code:find("%f[%w_]function%f[^%w_]", body) or #code
        for _, h in ipairs(helper_names) do
          if code:sub(body, next_fn):find("%." .. h .. "%s*%(") then builds = true end
        end
      end
      if i and builds then callers[name] = i end
    end
    for pat, i in pairs(callers) do
      for pos, open in code:gmatch("()%f[%w_.]" .. pat .. "%s*%(()") do
        local arg = luasrc.items(code, open)[i]
        if arg then add(arg, pos) end
      end
    end
  end
  return found
end

local function collect_tables()
  local found = {}
  local wire = require "paykit.kit.wire"
  for status, row in pairs(wire.STATUS) do found[row[2]] = "paykit.kit.wire.STATUS[" .. status .. "]" end
  local moka = require "paykit.providers.moka_codes"
  for k, row in pairs(moka.RESULT) do found[row[2]] = "moka_codes.RESULT[" .. k .. "]" end
  for k, row in pairs(moka.SUFFIX) do found[row[2]] = "moka_codes.SUFFIX[" .. k .. "]" end
  for k, row in pairs(moka.BANK) do found[row[1]] = "moka_codes.BANK[" .. k .. "]" end
  found[select(2, moka.result("No.Such.Code"))] = "moka_codes.result (unknown code)"
  found[select(2, moka.invalid_request_after_auth())] = "moka_codes.invalid_request_after_auth"
  found[(moka.bank("999"))] = "moka_codes.bank (unknown code)"
  found[(moka.bank(""))] = "moka_codes.bank (no code)"
  return found
end

local function collect_c()
  local found = {}
  local function scan(path, pattern, body_from, body_to)
    local src = luasrc.read(path)
    if body_from then
      local a = assert(src:find(body_from, 1, true), body_from)
      src = src:sub(a, (src:find(body_to, a, true)))
    end
    for c in src:gmatch(pattern) do found[c] = path end
  end
  scan("csrc/http.c", 'return "([%l_]+)";', "static const char *failure_code_of", "\n}\n")
  scan("csrc/wire.c", 'fail%(w, x, "([%l_]+)"')
  scan("csrc/httpparse.c", 'set_error%(ps, "([%l_]+)"')
  -- money.parse hands the C parser's code on as the validation error's
  scan("csrc/codec.c", 'paykit_fail%(L, "([%l_]+)"', "static int l_money_parse", "\n}\n")
  return found
end


--- Every code found: code -> where (a file:line, a table row, a C file).
local function all()
  local out = {}
  for _, f in ipairs { collect_lua(), collect_tables(), collect_c() } do
    for k, v in pairs(f) do out[k] = out[k] or v end
  end
  return out
end

return { lua = collect_lua, tables = collect_tables, c = collect_c, all = all }
