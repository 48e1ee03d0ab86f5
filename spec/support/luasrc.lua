-- Reading paykit's own Lua sources for the specs that check their shape (spec/layers_spec.lua,
-- spec/error_table_spec.lua): the files under a directory, a file's module name, its code
-- with the comments taken out (strings kept), and the modules it requires.
local M = {}

--- The .lua files under dir (sorted paths).
function M.files(dir)
  local p = assert(io.popen("find '" .. dir .. "' -type f -name '*.lua' | LC_ALL=C sort"))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

--- A file's bytes; a file that cannot be opened raises, or with optional gives nil.
function M.read(path, optional)
  local f, err = io.open(path, "rb")
  if not f then
    if optional then return nil end
    error(err, 2)
  end
  local s = f:read("*a")
  f:close()
  return s
end

--- The module name of a file under lua/: lua/paykit/kit/init.lua -> paykit.kit.
function M.module_name(path)
  local rel = assert(path:match("^lua/(.+)%.lua$"), "not under lua/: " .. path)
  return (rel:gsub("/init$", ""):gsub("/", "."))
end

-- The level of a long bracket opening at i ("[[" -> 0, "[==[" -> 2), or nil.
local function long_open(s, i)
  local eq = s:match("^%[(=*)%[", i)
  return eq and #eq or nil
end

--- The code of a Lua source with every comment replaced by a space (line breaks kept, so
-- that positions keep their line numbers); strings, short and long, are kept as they are, or
-- with blank_strings their contents are blanked (quotes kept).
function M.strip_comments(s, blank_strings)
  local out, i, n = {}, 1, #s
  local function keep(str, open, close)
    if not blank_strings then return str end
    return str:sub(1, open) .. str:sub(open + 1, #str - close):gsub("[^\n]", " ") .. str:sub(#str - close + 1)
  end
  while i <= n do
    local c = s:sub(i, i)
    if c == "-" and s:sub(i + 1, i + 1) == "-" then
      local level = long_open(s, i + 2)
      local stop
      if level then
        local close = "]" .. string.rep("=", level) .. "]"
        local _, e = s:find(close, i + 2, true)
        stop = e or n
      else
        stop = (s:find("\n", i + 2, true) or (n + 1)) - 1
      end
      local body = s:sub(i, stop)
      out[#out + 1] = " " .. body:gsub("[^\n]", "")
      i = stop + 1
    elseif c == "[" and long_open(s, i) then
      local level = long_open(s, i)
      local close = "]" .. string.rep("=", level) .. "]"
      local _, e = s:find(close, i + level + 2, true)
      e = e or n
      out[#out + 1] = keep(s:sub(i, e), level + 2, level + 2)
      i = e + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = s:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      out[#out + 1] = keep(s:sub(i, j), 1, 1)
      i = j + 1
    else
      local j = s:find("[-%[\"']", i) or (n + 1)
      if j == i then j = i + 1 end
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

local function line_of(s, pos)
  local _, k = s:sub(1, pos):gsub("\n", "")
  return k + 1
end

-- The forms a literal require takes: require "x", require 'x', require("x"), require ( "x" ),
-- pcall(require, "x").
local STATIC = {
  "%f[%w_]require%s*%(%s*([\"'])([^\"'\n]+)%1%s*%)",
  "%f[%w_]require%s*([\"'])([^\"'\n]+)%1",
  "%f[%w_]pcall%s*%(%s*require%s*,%s*([\"'])([^\"'\n]+)%1",
}

--- The requires of a source (comments taken out first): a list of {name=, line=}, one per
-- occurrence, and the lines of the requires whose argument is not a literal (dynamic).
function M.requires(src)
  local code = M.strip_comments(src)
  local found, seen = {}, {}
  for _, pat in ipairs(STATIC) do
    local init = 1
    while true do
      local s, e, _, name = code:find(pat, init)
      if not s then break end
      if not seen[s] then
        seen[s] = true
        found[#found + 1] = { name = name, line = line_of(code, s), pos = s }
      end
      init = e + 1
    end
  end
  table.sort(found, function(a, b) return a.pos < b.pos end)
  -- dynamic: require(expr) or pcall(require, expr) with expr not a literal, in code (the
  -- strings blanked: a require inside a string is text, such as nginx's configuration)
  local bare = M.strip_comments(src, true)
  local dynamic = {}
  local init = 1
  while true do
    local s, e = bare:find("%f[%w_]require%f[^%w_]", init)
    if not s then break end
    local call = bare:match("^%s*%(%s*(.)", e + 1)
    local pc = bare:sub(1, s - 1):match("pcall%s*%(%s*$") and bare:match("^%s*,%s*(.)", e + 1)
    local arg = call or pc
    if arg and arg ~= '"' and arg ~= "'" then dynamic[#dynamic + 1] = line_of(bare, s) end
    init = e + 1
  end
  return found, dynamic
end

-- The end of the string literal opening at i (its closing quote or bracket), in code.
local function skip_string(s, i)
  local c = s:sub(i, i)
  if c == "[" then
    local level = long_open(s, i)
    local _, e = s:find("]" .. string.rep("=", level) .. "]", i + level + 2, true)
    return e or #s
  end
  local j = i + 1
  while j <= #s do
    local d = s:sub(j, j)
    if d == "\\" then j = j + 2 elseif d == c then return j else j = j + 1 end
  end
  return #s
end

local OPEN = { ["("] = true, ["{"] = true, ["["] = true }
local CLOSE = { [")"] = true, ["}"] = true, ["]"] = true }

--- The expressions from position i of code (comments taken out) up to the bracket that closes
-- the list they are in: the texts of its top-level, comma-separated items (the arguments of a
-- call whose "(" is just before i; with one_item, only the first: the value of `name = ...`).
function M.items(code, i, one_item)
  local out, depth, start = {}, 0, i
  while i <= #code do
    local c = code:sub(i, i)
    if c == '"' or c == "'" or (c == "[" and long_open(code, i)) then
      i = skip_string(code, i)
    elseif OPEN[c] then depth = depth + 1
    elseif CLOSE[c] then
      if depth == 0 then out[#out + 1] = code:sub(start, i - 1); return out end
      depth = depth - 1
    elseif c == "\n" and depth == 0 and one_item
        and not code:find("^%s*and%f[^%w_]", i + 1) and not code:find("^%s*or%f[^%w_]", i + 1)
        and not code:find("^%s*%.%.", i + 1) then
      -- a statement's value ends with its line unless the next line goes on with and, or, ..
      out[#out + 1] = code:sub(start, i - 1)
      return out
    elseif (c == "," or c == ";") and depth == 0 then
      out[#out + 1] = code:sub(start, i - 1)
      if one_item then return out end
      start = i + 1
    end
    i = i + 1
  end
  out[#out + 1] = code:sub(start)
  return out
end

--- The short string literals of an expression's text, in order; a literal followed by `..`
-- (the start of a computed string) is given as its text followed by "*".
function M.strings(text)
  local out = {}
  for _, v, after in text:gmatch("([\"'])(.-)%1()") do
    out[#out + 1] = text:find("^%s*%.%.", after) and (v .. "*") or v
  end
  return out
end

return M
