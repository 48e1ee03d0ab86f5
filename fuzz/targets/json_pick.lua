-- core json_map / json_pick (csrc/json.c): the reading that builds only what a map names.
-- The first byte chooses the map (of four, with and without text numbers and null = "absent");
-- the rest is the text. Invariants, against json_decode(text, {duplicates = "last", text = ...})
-- (the kit's general reading):
--   both succeed or both fail, with the same message;
--   the kind is the top-level value's; each path's value equals json_decode's at that place
--   (deep-equal for a leaf path; for a path with longer ones below it, the scalar itself, or the
--   object/array mark of a table of that shape); with null = "absent" a null is nil;
--   the same map with opts.names and opts.kinds answers the table that the values above make
--   under those rules (REFERENCE below: containers, "string", "array", "integer");
--   the same maps with opts.keep_strings (the strings kept from input to input) answer exactly
--   what the maps without give (the same failure, the same values, the same named table).
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check

local same = C.same

local PATHS = { "a", { "a", "b" }, { "a", "b", "c" }, "Data", { "Data", "Url" }, { "Data", "Amount" }, "Amount",
  { "x", "y" }, "" }
local TEXT = { Amount = true, c = true }
local MAPS, NAMED, SHAPE, KEPT, KEPT_NAMED
local NAMES = { "n_a", "n_ab", "n_abc", "n_data", "n_url", "n_amount_d", "n_amount", "n_xy", "n_empty" }
local KINDS = { n_abc = "integer", n_url = "string", n_amount = "string", n_xy = "integer", n_empty = "array" }
-- per path: the path whose table it goes into (0: the answer's); the containers
local PARENT = { 0, 1, 2, 0, 4, 4, 0, 0, 0 }
local CONTAINER = { true, true, false, true }

-- mocopay_wire's int() (the Lua reading the "integer" kind replaces)
local function int(v)
  if type(v) == "string" and v:find("^%-?%d+$") then v = tonumber(v) end
  if type(v) ~= "number" or v ~= math.floor(v) then return v end
  return math.tointeger and math.tointeger(v) or v
end

-- What the named map must answer, from the positional values (got[i + 1]) and whether the
-- value at "" is an array (SHAPE's mark)
local function reference(core, got, empty_is_array)
  local res, tables = {}, {}
  for i = 1, #NAMES do
    if CONTAINER[i] and (got[i + 1] == core.json_object_mark or got[i + 1] == core.json_array_mark) then tables[i] = {} end
  end
  for i = 1, #NAMES do
    local v, kind = got[i + 1], KINDS[NAMES[i]]
    if CONTAINER[i] then v = tables[i]
    elseif kind == "string" then if type(v) ~= "string" then v = nil end
    elseif kind == "array" then if type(v) ~= "table" or not empty_is_array then v = nil end
    elseif kind == "integer" then v = int(v) end
    local dst = PARENT[i] == 0 and res or tables[PARENT[i]]
    if dst and v ~= nil then dst[NAMES[i]] = v end
  end
  return res
end

return function(core, data)
  if #data == 0 then return end
  if not MAPS then
    MAPS = {
      { core.json_map(PATHS), {} },
      { core.json_map(PATHS, { text = TEXT }), { text = TEXT } },
      { core.json_map(PATHS, { numbers = "text", null = "absent" }), { numbers = "text" }, true },
      { core.json_map(PATHS, { text = TEXT, null = "absent", max_depth = 8 }), { text = TEXT, max_depth = 8 }, true },
    }
    NAMED = {
      core.json_map(PATHS, { names = NAMES, kinds = KINDS }),
      core.json_map(PATHS, { text = TEXT, names = NAMES, kinds = KINDS }),
      core.json_map(PATHS, { numbers = "text", null = "absent", names = NAMES, kinds = KINDS }),
      core.json_map(PATHS, { text = TEXT, null = "absent", max_depth = 8, names = NAMES, kinds = KINDS }),
    }
    SHAPE = core.json_map({ "", { "", "" } }, { max_depth = 1000 })
    -- keep_strings twins: the map options above with keep_strings
    local plain = { {}, { text = TEXT }, { numbers = "text", null = "absent" }, { text = TEXT, null = "absent", max_depth = 8 } }
    KEPT, KEPT_NAMED = {}, {}
    for i, o in ipairs(plain) do
      local a, b = { keep_strings = true }, { keep_strings = true, names = NAMES, kinds = KINDS }
      for k, v in pairs(o) do a[k], b[k] = v, v end
      KEPT[i], KEPT_NAMED[i] = core.json_map(PATHS, a), core.json_map(PATHS, b)
    end
  end
  local pick = MAPS[data:byte(1) % 4 + 1]
  local x = data:sub(2)
  local want = { duplicates = "last" }
  for k, v in pairs(pick[2]) do want[k] = v end
  local tree, derr, dcode = core.json_decode(x, want)
  local got = table.pack(core.json_pick(x, pick[1]))
  local nkind, ntable, ncode = core.json_pick(x, NAMED[data:byte(1) % 4 + 1])
  do
    local kept = table.pack(core.json_pick(x, KEPT[data:byte(1) % 4 + 1]))
    check(kept.n == got.n, "the keep_strings pick answers another count")
    for i = 1, got.n do check(same(kept[i], got[i]), "the keep_strings pick differs") end
    local kk, kt, kc = core.json_pick(x, KEPT_NAMED[data:byte(1) % 4 + 1])
    check(kk == nkind and kc == ncode and same(kt, ntable), "the keep_strings named pick differs")
  end
  if tree == nil then
    check(got[1] == nil and got[2] == derr and got[3] == dcode, "pick and decode fail differently")
    check(nkind == nil and ntable == derr and ncode == dcode, "the named pick fails differently")
    return
  end
  check(nkind == got[1] and type(ntable) == "table", "the named pick's kind")
  do
    local _, mark = core.json_pick(x, SHAPE)
    check(same(reference(core, got, mark == core.json_array_mark), ntable), "the named pick differs from its reference")
  end
  local kind = got[1]
  local kinds = { string = "string", number = "number", boolean = "boolean", table = { object = true, array = true } }
  if tree == core.json_null then check(kind == "null", "the kind of null")
  elseif type(tree) == "table" then check(kinds.table[kind], "the kind of a table")
  else
    -- numbers = "text": a top-level number is read as its text
    check(kinds[type(tree)] == kind or (kind == "number" and type(tree) == "string" and pick[2].numbers),
      "the kind of a scalar")
  end
  local below = { a = true, ["a\0b"] = true, Data = true, x = true }
  for i, p in ipairs(PATHS) do
    local names = type(p) == "table" and p or { p }
    local v = kind == "object" and tree or nil
    for _, n in ipairs(names) do if type(v) == "table" then v = v[n] else v = nil end end
    local g = got[i + 1]
    if pick[3] and v == core.json_null then v = nil end
    if below[table.concat(names, "\0")] and type(v) == "table" then
      check(g == core.json_object_mark or g == core.json_array_mark, "no mark for a table at a path")
    else
      check(same(v, g), "pick differs from decode at a path")
    end
  end
end
