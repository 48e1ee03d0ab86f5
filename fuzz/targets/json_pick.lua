-- core json_map / json_pick (csrc/json.c): the reading that builds only what a map names.
-- The first byte chooses the map (of four, with and without text numbers and null = "absent");
-- the rest is the text. Invariants, against json_decode(text, {duplicates = "last", text = ...})
-- (the kit's general reading):
--   both succeed or both fail, with the same message;
--   the kind is the top-level value's; each path's value equals json_decode's at that place
--   (deep-equal for a leaf path; for a path with longer ones below it, the scalar itself, or the
--   object/array mark of a table of that shape); with null = "absent" a null is nil.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check = C.check

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local PATHS = { "a", { "a", "b" }, { "a", "b", "c" }, "Data", { "Data", "Url" }, { "Data", "Amount" }, "Amount",
  { "x", "y" }, "" }
local TEXT = { Amount = true, c = true }
local MAPS

return function(core, data)
  if #data == 0 then return end
  if not MAPS then
    MAPS = {
      { core.json_map(PATHS), {} },
      { core.json_map(PATHS, { text = TEXT }), { text = TEXT } },
      { core.json_map(PATHS, { numbers = "text", null = "absent" }), { numbers = "text" }, true },
      { core.json_map(PATHS, { text = TEXT, null = "absent", max_depth = 8 }), { text = TEXT, max_depth = 8 }, true },
    }
  end
  local pick = MAPS[data:byte(1) % 4 + 1]
  local x = data:sub(2)
  local want = { duplicates = "last" }
  for k, v in pairs(pick[2]) do want[k] = v end
  local tree, derr, dcode = core.json_decode(x, want)
  local got = table.pack(core.json_pick(x, pick[1]))
  if tree == nil then
    check(got[1] == nil and got[2] == derr and got[3] == dcode, "pick and decode fail differently")
    return
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
