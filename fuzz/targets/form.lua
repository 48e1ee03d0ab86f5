-- codec form/query: form_decode, query_decode, form_encode, canonical_query.
--   form_decode(form_encode(pairs)) gives the same pairs in the same order (both space
--   styles); the map holds exactly the pairs; query_decode(canonical_query(pairs)) gives the
--   same multiset of pairs, sorted by encoded key then value.
local C = dofile((debug.getinfo(1, "S").source:sub(2):gsub("[^/]*$", "")) .. "common.lua")
local check, failure = C.check, C.failure

local function same_pairs(a, b, what)
  check(#a == #b, "%s: %d pairs, then %d", what, #a, #b)
  for i = 1, #a do
    check(a[i][1] == b[i][1] and a[i][2] == b[i][2], "%s: pair %d differs", what, i)
  end
end

local function map_holds(map, pairs_)
  local n = 0
  for k, v in pairs(map) do
    check(type(k) == "string", "map key is not a string")
    if type(v) == "string" then n = n + 1 else
      check(type(v) == "table" and #v >= 2, "a repeated key's value is an array of 2 or more")
      n = n + #v
    end
  end
  check(n == #pairs_, "the map holds %d values for %d pairs", n, #pairs_)
  for _, p in ipairs(pairs_) do
    local v = map[p[1]]
    if type(v) == "string" then check(v == p[2], "map value differs from its pair") end
  end
end

local function sorted(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p end
  table.sort(out, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
  return out
end

return function(core, x)
  local map, list, code = core.form_decode(x)
  if map then
    check(type(list) == "table", "form_decode gives map, pairs")
    map_holds(map, list)
    if #list > 0 then
      same_pairs(list, select(2, core.form_decode(core.form_encode(list))), "form round trip (+)")
      same_pairs(list, select(2, core.form_decode(core.form_encode(list, { space = "%20" }))), "form round trip (%20)")
      local canon = core.canonical_query(list)
      local _, back = core.query_decode(canon)
      same_pairs(sorted(list), sorted(back), "canonical_query round trip")
      check(core.canonical_query(back) == canon, "canonical_query is not stable")
    end
  else
    failure(x, map, list, code, { invalid_percent = true })
  end
  local qmap, qlist, qcode = core.query_decode(x)
  if qmap then
    map_holds(qmap, qlist)
    if #qlist > 0 then
      same_pairs(sorted(qlist), sorted(select(2, core.query_decode(core.canonical_query(qlist)))), "query round trip")
    end
  else
    failure(x, qmap, qlist, qcode, { invalid_percent = true })
  end
end
