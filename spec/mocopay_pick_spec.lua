-- MoCoPay verifyPayment's fast reading: payment_info made in one C call (core.json_pick with
-- opts.names and opts.kinds, mocopay_wire.INFO_MAP) against the general reading (the decoded
-- answer's payment_info) and the positional pick (PAYMENT_MAP), over generated answers; the
-- request sent without kit.wire.send against the one kit.wire.send makes; result_amount
-- against amount; the errors of json_map's new options.
local core = require "paykit.core"
local paykit = require "paykit"
local json = require "paykit.kit.json"
local mwire = require "paykit.providers.mocopay_wire"

local unpack = table.unpack or unpack

local same = require "spec.support.same"

local function show(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local out = {}
  for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. show(x, depth + 1) end
  table.sort(out)
  return "{" .. table.concat(out, ", ") .. "}"
end

-- a small deterministic generator (the same answers on every run, on both runtimes: every
-- product stays below 2^53, so LuaJIT's doubles make the same sequence as Lua 5.4's integers)
local seed = 12345
local function rnd(n)
  seed = (seed * 16807) % 2147483647
  return seed % n + 1
end

local SCALARS = { '"s-1"', '"PaymentComplete"', '"expired"', '""', '"12"', '"-7"', '"007"', '"1.5"', '"x y"',
  '"99999999999999999999"', '"-0"', "0", "1", "-3", "27.50", "1.0", "2e3", "1E400", "-0", "9007199254740993",
  "12345678901234567890", "true", "false", "null", '"\\u00e9t\\u00e9"', '"a\\"b"' }
local function value(depth)
  local r = rnd(10)
  if depth > 2 or r <= 6 then return SCALARS[rnd(#SCALARS)] end
  if r <= 8 then
    local items = {}
    for i = 1, rnd(4) - 1 do items[i] = value(depth + 1) end
    return "[" .. table.concat(items, ",") .. "]"
  end
  local members = {}
  for i = 1, rnd(4) - 1 do members[i] = '"' .. ({ "userId", "phone", "mcc", "mnc", "x" })[rnd(5)] .. '":' .. value(depth + 1) end
  return "{" .. table.concat(members, ",") .. "}"
end

local MEMBERS = { "sessionId", "requestId", "referenceId", "serviceCode", "pid", "type", "lang", "series", "status",
  "currencyCode", "recurrent", "expiresIn", "timeInit", "timeAuthorized", "timeLastSuccessfullPayment", "transactions",
  "chargedAmount", "failedAmount", "lastChargedAmount", "lastFailedAmount", "totalChargedAmount", "totalFailedAmount",
  "endUser", "other" }

local function answer()
  local members = {}
  for i = 1, rnd(30) do
    local name = MEMBERS[rnd(#MEMBERS)]
    local v = value(0)
    if name == "endUser" and rnd(2) == 1 then
      local eu = {}
      for j = 1, rnd(5) do eu[j] = '"' .. ({ "userId", "phone", "mcc", "mnc", "x" })[rnd(5)] .. '":' .. value(1) end
      v = "{" .. table.concat(eu, ",") .. "}"
    elseif name == "transactions" and rnd(2) == 1 then
      v = "[" .. value(1) .. "," .. value(1) .. "]"
    elseif (name == "series" or name == "expiresIn") and rnd(2) == 1 then
      v = SCALARS[rnd(14)]
    end
    members[i] = '"' .. name .. '":' .. v
  end
  local r = rnd(20)
  if r == 1 then return "[" .. table.concat(members, ","):gsub('"%w+":', "") .. "]" end
  if r == 2 then return SCALARS[rnd(#SCALARS)] end
  return "{" .. table.concat(members, ",") .. "}"
end

-- the general reading: the decoded answer's payment_info (nil when it is not an object or array)
local function general(text)
  local tree, err = json.decode(text, { exact = mwire.exact })
  if tree == nil then return nil, err end
  if type(tree) ~= "table" then return false end
  return mwire.payment_info(tree)
end

describe("mocopay's payment_info read in one C call", function()
  it("is the decoded answer's payment_info, and the positional pick's, over generated answers", function()
    local tables, failures = 0, 0
    for n = 1, 3000 do
      local text = answer()
      if n % 7 == 0 then -- a mutation: one byte changed or the text cut
        local i = rnd(#text)
        text = rnd(2) == 1 and (text:sub(1, i - 1) .. string.char(rnd(128) - 1) .. text:sub(i + 1)) or text:sub(1, i)
      end
      local want, werr = general(text)
      local kind, t, code = core.json_pick(text, mwire.INFO_MAP)
      local picked = { n = select("#", json.pick(text, mwire.PAYMENT_MAP)), json.pick(text, mwire.PAYMENT_MAP) }
      if want == nil then
        assert.is_nil(kind, text)
        assert.are.equal(werr, t, text)
        assert.are.equal("invalid_json", code)
        assert.is_nil(picked[1])
        failures = failures + 1
      elseif want == false then
        assert.truthy(kind ~= "object" and kind ~= "array", text)
      else
        assert.truthy(kind == "object" or kind == "array", text)
        local got = mwire.payment_info_fast(t)
        assert.truthy(same(want, got), text .. "\n" .. show(want) .. "\n" .. show(got))
        assert.truthy(same(want, mwire.payment_info_of(unpack(picked, 2, picked.n))), text)
        if core.json_null then assert.are_not.equal(core.json_null, got.end_user) end
        tables = tables + 1
      end
    end
    assert.truthy(tables > 2000 and failures > 100, tables .. " tables, " .. failures .. " failures")
  end)

  it("keeps whole numbers as int() made them: strings of digits, integral floats", function()
    local ints = {
      { '"12"', 12 }, { '"-7"', -7 }, { '"007"', 7 }, { '"-0"', 0 }, { "1.0", 1 }, { "2e3", 2000 }, { '"1.5"', "1.5" },
      { "1.5", 1.5 }, { '" 1"', " 1" }, { "true", true },
    }
    for _, c in ipairs(ints) do
      local _, t = core.json_pick('{"series":' .. c[1] .. ',"expiresIn":' .. c[1] .. "}", mwire.INFO_MAP)
      assert.are.equal(c[2], t.series, c[1])
      assert.are.equal(c[2], t.expires_in, c[1])
      if math.type then assert.are.equal(math.type(c[2]), math.type(t.series), c[1]) end
    end
  end)

  it("refuses bad names and kinds by option", function()
    assert.has_error(function() core.json_map({ "a" }, { names = { "x", "y" } }) end,
      "bad argument #2 to 'json_map' (opts.names must be a list of one name per path)")
    assert.has_error(function() core.json_map({ "a" }, { names = { 1 } }) end)
    assert.has_error(function() core.json_map({ "a" }, { kinds = { a = "string" } }) end)
    assert.has_error(function() core.json_map({ "a" }, { names = { "x" }, kinds = { x = "float" } }) end)
    assert.has_error(function() core.json_map({ "a", { "a", "b" } }, { names = { "x", "y" }, kinds = { x = "string" } }) end)
    assert.has_error(function() core.json_map({ "a" }, { names = { "x" }, kinds = 5 }) end)
    local m = core.json_map({ "a", { "a", "b" }, "c" }, { names = { "A", "B", "C" }, kinds = { C = "array" } })
    local kind, t = core.json_pick('{"a":{"b":1},"c":{}}', m)
    assert.are.equal("object", kind)
    assert.truthy(same({ A = { B = 1 } }, t))
    kind, t = core.json_pick('{"a":[1],"c":[{"x":1}],"a":5}', m)
    assert.are.equal("object", kind)
    assert.truthy(same({ C = { { x = 1 } } }, t))
    assert.is_nil(core.json_pick('{"a":', m))
  end)

  it("answers with keep_strings exactly what the same map answers without, over generated answers", function()
    -- values from small pools, so that a path sees the same bytes again (a kept string given),
    -- other bytes of the same length, strings around the longest kept (256 bytes), numbers kept
    -- as text and answers that fail half way (the kept strings of a failed pick)
    local long = { string.rep("a", 255), string.rep("a", 256), string.rep("a", 257), string.rep("b", 256),
                   string.rep("a", 300) }
    local pool = { '"TRY"', '"EUR"', '"TRZ"', '"PaymentComplete"', '"PaymentCompletf"', '""', '"\\u00e9"', '"\\u00e8"',
      "27.50", "27.51", "0", "1", "true", "null", '"s-1"', '"s-2"', "[]", '{"userId":"u-1","mcc":"286"}',
      '{"userId":"u-2","mcc":"286"}' }
    for _, l in ipairs(long) do pool[#pool + 1] = '"' .. l .. '"' end
    local NAMES = { "a", "b", "c", "d", "e", "f", "g", "h" }
    local PATHS = { "a", "b", "c", { "c", "userId" }, { "c", "mcc" }, "d", "e", "f" }
    local opts = {
      { text = { b = true, e = true }, null = "absent" },
      { numbers = "text" },
      { text = { b = true }, names = NAMES, kinds = { a = "string", f = "integer" } },
      { numbers = "text", null = "absent", names = NAMES },
    }
    local plain, kept = {}, {}
    for i, o in ipairs(opts) do
      local k = { keep_strings = true }
      for key, v in pairs(o) do k[key] = v end
      if k.names then o.names, k.names = { unpack(NAMES, 1, #PATHS) }, { unpack(NAMES, 1, #PATHS) } end
      plain[i], kept[i] = core.json_map(PATHS, o), core.json_map(PATHS, k)
    end
    local compared, failed = 0, 0
    for n = 1, 4000 do
      local members = {}
      for i = 1, rnd(8) do members[i] = '"' .. ({ "a", "b", "c", "d", "e", "f", "g" })[rnd(7)] .. '":' .. pool[rnd(#pool)] end
      local text = "{" .. table.concat(members, ",") .. "}"
      if n % 9 == 0 then text = text:sub(1, rnd(#text)) end
      for i = 1, #opts do
        local want = { n = select("#", core.json_pick(text, plain[i])), core.json_pick(text, plain[i]) }
        local got = { n = select("#", core.json_pick(text, kept[i])), core.json_pick(text, kept[i]) }
        assert.are.equal(want.n, got.n, text)
        assert.truthy(same(want, got), text .. "\n" .. show(want) .. "\n" .. show(got))
        if want[1] == nil then failed = failed + 1 end
        compared = compared + 1
      end
    end
    assert.are.equal(16000, compared)
    assert.truthy(failed > 500, failed .. " failed picks")
    assert.has_error(function() core.json_map({ "a" }, { keep_strings = true, names = { "x", "y" } }) end)
  end)
end)

describe("mocopay's result amount", function()
  it("is amount's text for every unit, currency and text", function()
    local texts = { "199", "0", "007", "27.50", "27.5", "27.555", "1e2", "-1", "+1", " 1", "", "123456789012345",
      "1234567890123456", "9007199254740991", "27.", ".5", "abc", "1.000" }
    local n = 0
    for _, unit in ipairs { "minor", "major" } do
      for _, cur in ipairs { "TRY", "try", "JPY", "KWD", "XXX", "TL", "EUR" } do
        for _, text in ipairs(texts) do
          for _ = 1, 2 do -- the second time with the exponent remembered
            assert.are.equal(mwire.amount(text, cur, unit), mwire.result_amount(text, cur, unit), unit .. " " .. cur .. " " .. text)
            n = n + 1
          end
        end
      end
    end
    assert.is_nil(mwire.result_amount(nil, "TRY", "major"))
    assert.are.equal(mwire.amount("1", 5, "minor"), mwire.result_amount("1", 5, "minor"))
    assert.truthy(n > 400)
  end)
end)

describe("mocopay verifyPayment sent without kit.wire.send", function()
  local SECRET = "pick-secret"
  local function client(body_of, status, extra)
    local sent = {}
    local opts = { api_key = "app-1", api_secret = SECRET, base_url = "http://127.0.0.1:9/moco", retry = false,
      amount_unit = "major" }
    for k, v in pairs(extra or {}) do opts[k] = v end
    local gw = assert(paykit.mocopay(opts))
    gw.http.wire = { request = function(a, b)
      local req = type(b) == "table" and b or a
      -- the headers but the correlation id (random per call: its presence is kept)
      -- and their order (the bytes on the wire)
      local headers, order = {}, {}
      for k, v in pairs(req.headers) do
        headers[k] = k == "X-Correlation-Id" and (#v > 0) or v
        order[#order + 1] = k
      end
      sent[#sent + 1] = { method = req.method, url = req.url, body = req.body, headers = headers }
      sent[#sent].order = table.concat(order, "\n")
      local q = core.query_decode(req.url:match("%?(.*)$"))
      return { status = status or 200, headers = { ["Content-Type"] = "application/json" }, body = body_of(q) }
    end }
    return gw, sent
  end

  local function fields(r)
    local t = {}
    for k, v in pairs(r) do t[k] = v end
    t.raw = r.raw -- decoded on first read
    t.payment = r.payment -- (verify_payment's quick result) read on first read
    t.correlation_id = t.correlation_id ~= nil -- random per call: its presence is compared
    return t
  end

  local function without_order(r)
    return { method = r.method, url = r.url, body = r.body, headers = r.headers }
  end

  -- the request the signer's path sent before: its header, then kit.wire.send
  local kwire = require "paykit.kit.wire"
  local function before(gw, by)
    local chosen, key = require("paykit.providers.mocopay_request").verify_key(by)
    local header = gw.signer:verify(gw.verify_signed_path, chosen, key, gw.header_prefix)
    return kwire.send(gw, "verifyPayment", { method = "POST", path = gw.verify_path, query = { { chosen, key } },
      body = "", idempotent = true, url = nil, headers = header and { Signature = header } or nil, op = nil,
      own_headers = header and true or nil })
  end

  it("sends the bytes the signer's path sent before, headers in the same order", function()
    for _, id in ipairs { "s-1", "sess with space", "a&b=c+d", "\195\169t\195\169", "~x" } do
      for _, by in ipairs { id, { sessionId = id }, { userId = id }, { transactionId = id } } do
        local gw, sent = client(function() return "{}" end, 200)
        gw:verify_payment(by)
        before(gw, by)
        assert.are.equal(2, #sent)
        assert.truthy(same(sent[1], sent[2]), id .. "\n" .. show(sent[1]) .. "\n" .. show(sent[2]))
      end
    end
  end)

  it("gives an answer about the session asked for the result the whole reading gives, over generated answers", function()
    -- the quick result (mocopay_wire.VERIFY_MAP: payment and raw read on first read) against
    -- the result of the whole reading (verify_map nil: payment_info made at once), field for
    -- field, printed, and the errors
    local ids = { "s-1", "sess with space", "\195\169t\195\169", "a&b=c+d" }
    local quick, compared, errs = 0, 0, 0
    local cid = 'correlation_id = "[^"]*"'
    -- a status word that is an object or array is named in the message by its table's address
    -- (the printed message has the address masked as a long number: its last digits stay)
    local function printed(r) return (tostring(r):gsub(cid, ""):gsub('MoCoPay session table[^"]*"', "MoCoPay session table\"")) end
    local function fields_of(r)
      local t = fields(r)
      if type(t.message) == "string" then t.message = t.message:gsub("table: 0x%x+", "table") end
      return t
    end
    for n = 1, 1500 do
      local text = answer()
      local id = ids[rnd(#ids)]
      if text:sub(1, 1) == "{" and rnd(4) > 1 then
        -- the session asked for, first or last (maybe again among the members), and at times a
        -- currency paykit knows
        local members = { '"sessionId":"' .. id .. '"' }
        if rnd(2) == 1 then members[2] = '"currencyCode":"' .. ({ "TRY", "JPY", "KWD" })[rnd(3)] .. '"' end
        if rnd(2) == 1 then members[#members + 1] = '"status":"' .. ({ "PaymentComplete", "Expired", "x" })[rnd(3)] .. '"' end
        if rnd(3) == 1 then members[#members + 1] = '"totalChargedAmount":' .. ({ "27.50", "199", '"5"', "true" })[rnd(4)] end
        local inner = text:sub(2, -2)
        local add = table.concat(members, ",")
        if inner == "" then text = "{" .. add .. "}"
        elseif rnd(4) == 1 then text = "{" .. add .. "," .. inner .. "}"
        else text = "{" .. inner .. "," .. add .. "}" end
      end
      if n % 13 == 0 then text = text:sub(1, rnd(#text)) end
      local fast = client(function() return text end, 200)
      local slow = client(function() return text end, 200)
      slow.verify_map = nil
      for _, by in ipairs { id, { sessionId = id } } do
        local r1, e1 = fast:verify_payment(by)
        local r2, e2 = slow:verify_payment(by)
        if r2 then
          assert.truthy(r1, text)
          if rawget(r1, "payment") == nil then quick = quick + 1 end
          -- printed before anything is read: payment shown, raw not yet
          assert.are.equal(printed(r2), printed(r1), text)
          if n % 2 == 1 then local _ = r1.raw end -- raw read before payment
          local a, b = fields_of(r2), fields_of(r1)
          assert.truthy(same(a, b), text .. "\n" .. show(a) .. "\n" .. show(b))
          assert.truthy(same(mwire.payment_info(json.decode(text, { exact = mwire.exact })), b.payment), text)
          assert.are.equal(printed(r2), printed(r1), text)
        else
          assert.is_nil(r1, text)
          assert.are.equal(e2.kind, e1.kind)
          assert.are.equal(e2.code, e1.code)
          assert.are.equal(e2.message, e1.message)
          assert.are.equal(e2.status, e1.status)
          assert.are.equal(e2.field, e1.field)
          errs = errs + 1
        end
        compared = compared + 1
      end
    end
    assert.are.equal(3000, compared)
    print(("[mocopay quick result] %d quick results, %d errors of %d"):format(quick, errs, compared))
    assert.truthy(quick > 500 and errs > 300, quick .. " quick results, " .. errs .. " errors")
  end)

  it("sends the same request and gives the same result or error as the general way", function()
    local ids = { "s-1", "sess with space", "a&b=c+d", "\195\169t\195\169", "semi;colon", "50%", "~x" }
    local bodies = {
      function(q) return '{"sessionId":"' .. (q.sessionId or "?") .. '","status":"PaymentComplete","currencyCode":"TRY","totalChargedAmount":27.50}' end,
      function(q) return '{"sessionId":"' .. (q.sessionId or "?") .. '","status":"Expired","currencyCode":"XXX","totalChargedAmount":"5"}' end,
      function(q) return '{"sessionId":"' .. (q.sessionId or "?") .. '","status":7,"endUser":{"userId":"u"},"transactions":["t"]}' end,
      function(q) return '{"sessionId":"' .. (q.sessionId or "?") .. '","status":null,"series":"12","expiresIn":1.0}' end,
      function() return '{"sessionId":"another","status":"PaymentComplete"}' end,
      function() return '{"status":"PaymentComplete"}' end,
      function() return '[1,2]' end,
      function() return '"text"' end,
      function() return '{"sessionId":' end,
      function() return "" end,
    }
    local compared = 0
    for _, status in ipairs { 200, 201, 400, 500 } do
      for bi, body_of in ipairs(bodies) do
        for _, id in ipairs(ids) do
          local fast, fsent = client(body_of, status)
          local slow, ssent = client(body_of, status)
          slow.signer = nil -- no C signer: kit.wire.send and mocopay_wire.sign, the general way
          for _, by in ipairs { id, { sessionId = id } } do
            local r1, e1 = fast:verify_payment(by)
            local r2, e2 = slow:verify_payment(by)
            -- (the general way grows the headers in another order: Accept, then Signature)
            assert.truthy(same(without_order(ssent[#ssent]), without_order(fsent[#fsent])),
              id .. " " .. bi .. "\n" .. show(ssent[#ssent]) .. "\n" .. show(fsent[#fsent]))
            if r2 then
              assert.truthy(same(fields(r2), fields(r1)), id .. " " .. bi .. " " .. status .. "\n" .. show(fields(r2)) .. "\n" .. show(r1 and fields(r1)))
              local cid = 'correlation_id = "[^"]*"'
              assert.are.equal((tostring(r2):gsub(cid, "")), (tostring(r1):gsub(cid, "")))
            else
              assert.is_nil(r1)
              assert.are.equal(e2.kind, e1.kind)
              assert.are.equal(e2.code, e1.code)
              assert.are.equal(e2.message, e1.message)
              assert.are.equal(e2.status, e1.status)
              assert.are.equal(e2.field, e1.field)
            end
            compared = compared + 1
          end
        end
      end
    end
    assert.are.equal(4 * #bodies * #ids * 2, compared)
  end)
end)
