-- paykit.core JSON: the writer (exact numbers, ordered objects, escapes, UTF-8 policy) and the
-- reader (RFC 8259 strict, number literals kept as text for chosen members).
local core = require "paykit.core"
local cjson = require "cjson"
local prng = require "spec.support.prng"
local E, D = core.json_encode, core.json_decode

local MAX_SAFE = 9007199254740991 -- 2^53 - 1
local MAX_SAFE_TEXT = "9007199254740991"

-- The shape of paykit.gateway's ordered objects, marked the way the writer reads them.
local Ordered = { __json_keys = "_k", __json_values = "_v" }
local function ordered(...)
  local o = setmetatable({ _k = {}, _v = {} }, Ordered)
  local kv = { ... }
  for i = 1, #kv, 2 do o._k[#o._k + 1] = kv[i]; o._v[#o._v + 1] = kv[i + 1] end
  return o
end

local function fails(pattern, ok, err, code)
  assert.is_nil(ok)
  assert.is_string(err)
  assert.truthy(code == "invalid_json" or code == "unencodable", "code: " .. tostring(code))
  assert.truthy(err:find(pattern, 1, true), "error was: " .. err)
end

describe("core.json_encode", function()
  it("writes scalars: strings, booleans, integers and null", function()
    assert.equal('"abc"', E("abc"))
    assert.equal("true", E(true))
    assert.equal("false", E(false))
    assert.equal("42", E(42))
    assert.equal("-7", E(-7))
    assert.equal("null", E(core.json_null))
    assert.equal("null", E(cjson.null)) -- cjson's null is the same NULL light userdata
  end)

  it("writes Lua 5.4's whole integer range exactly", function()
    if not math.mininteger then return end -- LuaJIT numbers are doubles (see the 2^53 case)
    assert.equal("-9223372036854775808", E(math.mininteger))
    assert.equal("9223372036854775807", E(math.maxinteger))
    assert.equal("[0,-1,10,-100]", E({ 0, -1, 10, -100 }))
  end)

  it("writes integral floats within 2^53 as integers, -0.0 as 0", function()
    assert.equal("3", E(3.0))
    assert.equal("0", E(-0.0))
    assert.equal(MAX_SAFE_TEXT, E(MAX_SAFE + 0.0))
  end)

  it("refuses fractions, NaN, infinities and floats beyond 2^53, naming the place", function()
    fails("not an integer within 2^53", E({ Amount = 27.5 }))
    fails("at $.Amount", E({ Amount = 27.5 }))
    fails("not an integer", E(0 / 0))
    fails("not an integer", E(math.huge))
    fails("not an integer", E(-math.huge))
    fails("not an integer", E(2.0 ^ 60))
  end)

  it("writes core.json_number text exactly as the number literal, never through a float", function()
    assert.equal('{"Amount":27.50}', E(ordered("Amount", core.json_number("27.50"))))
    assert.equal("79.10", E(core.json_number("79.10")))
    assert.equal("-0.01", E(core.json_number("-0.01")))
    assert.equal("12345678901234567890.12", E(core.json_number("12345678901234567890.12")))
    assert.equal("1e-7", E(core.json_number("1e-7")))
    assert.equal("27.50", tostring(core.json_number("27.50")))
  end)

  it("refuses core.json_number text that is not a JSON number", function()
    for _, bad in ipairs { "", "27.", ".5", "027", "+1", "1e", "0x10", "1,5", " 1", "1 ", "NaN", "-", "--1" } do
      assert.has_error(function() core.json_number(bad) end)
    end
  end)

  it("checks a __json_number literal at write time too", function()
    local mt = { __json_number = 1 }
    fails("not a JSON number", E({ a = setmetatable({ "27." }, mt) }))
    assert.equal("[5]", E({ setmetatable({ "5" }, mt) }))
  end)

  it("keeps an ordered object's member order (paykit.gateway's objects)", function()
    local body = ordered("PaymentDealerAuthentication", ordered("DealerCode", "1731", "Username", "u"),
      "PaymentDealerRequest", ordered("Zeta", 1, "Alpha", 2, "Mid", core.json_number("0.10")))
    assert.equal('{"PaymentDealerAuthentication":{"DealerCode":"1731","Username":"u"},'
      .. '"PaymentDealerRequest":{"Zeta":1,"Alpha":2,"Mid":0.10}}', E(body))
  end)

  it("writes plain tables: sequences as arrays, others as objects with keys sorted by bytes", function()
    assert.equal("[1,2,3]", E({ 1, 2, 3 }))
    assert.equal('{"B":1,"a":2,"b":3}', E({ b = 3, a = 2, B = 1 }))
    assert.equal('{"a":{"x":[true,false]},"z":"y"}', E({ z = "y", a = { x = { true, false } } }))
    assert.equal('{"10":"b","2":"a"}', E({ [2] = "a", [10] = "b" })) -- integer keys as text, byte order
  end)

  it("writes an empty table as [] unless marked as an object", function()
    assert.equal("[]", E({}))
    assert.equal("{}", E(setmetatable({}, { __json_type = "object" })))
    assert.equal("[]", E(setmetatable({}, { __json_type = "array" })))
  end)

  it("refuses tables that mix array items and members, or have holes", function()
    fails("both array items and named members", E({ 1, 2, x = 3 }))
    local holes = { 1 }; holes[3] = 3
    fails("both array items and named members", E({ list = holes }))
    fails("at $.list", E({ list = holes }))
  end)

  it("refuses values JSON has no form for, naming where they are", function()
    fails("JSON has no form", E({ a = { print } }))
    fails("at $.a[1]", E({ a = { print } }))
    fails("nil", E(nil))
    fails("member name that is neither", E({ [true] = 1 }))
  end)

  it("escapes quote, backslash and every control byte, and leaves / and UTF-8 alone", function()
    assert.equal([["a\"b\\c/d"]], E('a"b\\c/d'))
    assert.equal([["\b\f\n\r\t"]], E("\b\f\n\r\t"))
    assert.equal([["\u0000\u0001\u001f"]], E("\0\1\31"))
    for i = 0, 31 do
      local out = E(string.char(i))
      assert.truthy(out:match('^"\\[bfnrtu]'), "byte " .. i .. " -> " .. out)
      assert.equal(string.char(i), D(out))
    end
    assert.equal('"\127"', E("\127")) -- DEL is not a JSON control character
    assert.equal('"Ali Yılmaz €😀"', E("Ali Yılmaz €😀"))
  end)

  it("refuses invalid UTF-8 by default, without the text in the message", function()
    for _, bad in ipairs { "\255", "\192\175", "\224\128\175", "\237\160\128", "\244\144\128\128", "\195", "a\128b" } do
      local ok, err = E({ CardHolderFullName = "4111111111111111" .. bad })
      assert.is_nil(ok)
      assert.truthy(err:find("not valid UTF-8 at $.CardHolderFullName", 1, true), err)
      assert.falsy(err:find("4111", 1, true))
    end
  end)

  it("replaces each invalid byte with U+FFFD when asked", function()
    assert.equal('"a\239\191\189b"', E("a\255b", { invalid_utf8 = "replace" }))
    assert.equal('"\239\191\189\239\191\189"', E("\192\175", { invalid_utf8 = "replace" }))
  end)

  it("names the place with printable ASCII only", function()
    local _, err = E({ ["k\0\255y"] = 1.5 })
    assert.truthy(err:find("at $.k??y", 1, true), err)
  end)

  it("stops at max_depth, which is also what a cycle gives", function()
    local t = {}; t[1] = t
    fails("deeper than max_depth", E(t))
    local deep = {}
    local cur = deep
    for _ = 1, 10 do cur[1] = {}; cur = cur[1] end
    assert.truthy(E(deep))
    fails("deeper than max_depth", E(deep, { max_depth = 5 }))
  end)

  it("writes long strings (beyond its buffer) intact", function()
    local s = string.rep("ab\"", 50000)
    assert.equal(s, D(E(s)))
  end)

  it("is what cjson decodes back to the same value", function()
    local v = { a = { 1, 2, { b = "x\0y\n" } }, c = "é", d = false, e = -123 }
    local back = cjson.decode(E(v))
    assert.same(v, back)
  end)

  it("stays correct when a finalizer run inside it calls json_encode again", function()
    -- GC steps inside json_encode may run __gc finalizers; one that encodes too must not write
    -- into the outer call's buffer. Rounds go on until a finalizer really ran inside a call.
    local big = {}
    for i = 1, 300 do
      local t = {}
      for k = 1, 40 do t["k" .. k] = string.rep("v", k) end
      big[i] = t
    end
    local expect = assert(E(big))
    local ran, inner_ok = 0, true
    local function finalize()
      ran = ran + 1
      if E({ x = "inner" }) ~= '{"x":"inner"}' then inner_ok = false end
    end
    local reentered = false
    for _ = 1, 400 do
      for _ = 1, 200 do
        if newproxy then getmetatable(newproxy(true)).__gc = finalize -- luacheck: ignore (LuaJIT)
        else setmetatable({}, { __gc = finalize }) end
      end
      local before = ran
      assert.equal(expect, E(big))
      if ran > before then reentered = true; break end
    end
    assert.is_true(reentered, "no finalizer ran inside json_encode")
    assert.is_true(inner_ok)
  end)

  it("raises for misused options", function()
    assert.has_error(function() E(1, { invalid_utf8 = "drop" }) end)
    assert.has_error(function() E(1, { max_depth = 0 }) end)
  end)
end)

describe("core.json_decode", function()
  it("reads every JSON type", function()
    local v = D(' {"s":"x","n":12,"f":1.5,"t":true,"F":false,"z":null,"a":[1,[2]],"o":{}} ')
    assert.equal("x", v.s)
    assert.equal(12, v.n)
    assert.equal(1.5, v.f)
    assert.is_true(v.t)
    assert.is_false(v.F)
    assert.equal(core.json_null, v.z)
    assert.equal(cjson.null, v.z)
    assert.same({ 1, { 2 } }, v.a)
    assert.same({}, v.o)
  end)

  it("reads scalars at the top level", function()
    assert.equal("x", D('"x"'))
    assert.equal(5, D("5"))
    assert.equal(core.json_null, D("null"))
  end)

  it("gives integers within 2^53 as integers (Lua 5.4 integer subtype)", function()
    assert.equal(MAX_SAFE, D(MAX_SAFE_TEXT))
    assert.equal(-MAX_SAFE, D("-" .. MAX_SAFE_TEXT))
    if math.type then
      assert.equal("integer", math.type(D("42")))
      assert.equal("float", math.type(D("42.0")))
      assert.equal("float", math.type(D("1e2")))
    end
    assert.equal(0, D("-0"))
  end)

  it("gives fractions, exponents and big integers as floats", function()
    assert.equal(100, D("1e2"))
    assert.equal(0.015, D("1.5E-2"))
    assert.equal(2 ^ 64, D("18446744073709551616"))
    local z = D("-0.0")
    assert.equal(0, z)
    assert.equal(-math.huge, 1 / z) -- the sign of -0.0 is kept
  end)

  it("keeps the literal text of the members named in opts.text (exact money)", function()
    local v = D('{"Amount":27.50,"Other":27.50,"Inner":{"Amount":0.10},"List":[1.10]}', { text = { Amount = true } })
    assert.equal("27.50", v.Amount)
    assert.equal(27.5, v.Other)
    assert.equal("0.10", v.Inner.Amount)
    assert.equal(1.1, v.List[1])
    assert.equal("12345678901234567890", D('{"Amount":12345678901234567890}', { text = { Amount = true } }).Amount)
  end)

  it("keeps every number as text with numbers = \"text\"", function()
    assert.same({ "1", "-0", "2.50", "1e5" }, D("[1,-0,2.50,1e5]", { numbers = "text" }))
  end)

  it("decodes escapes and surrogate pairs", function()
    assert.equal('"\\/\b\f\n\r\t', D([["\"\\\/\b\f\n\r\t"]]))
    assert.equal("é€😀", D([["\u00e9\u20AC\ud83d\ude00"]]))
    assert.equal("a\0b", D([["a\u0000b"]]))
  end)

  it("refuses lone surrogates and bad escapes", function()
    fails("lone surrogate", D([["\ud800"]]))
    fails("lone surrogate", D([["\udc00"]]))
    fails("lone surrogate", D([["\ud800\u0041"]]))
    fails("bad \\u escape", D([["\u12G4"]]))
    fails("bad escape", D([["\x41"]]))
  end)

  it("refuses raw control bytes and invalid UTF-8 in strings", function()
    fails("control character", D('"a\nb"'))
    fails("control character", D('"\0"'))
    for _, bad in ipairs { "\255", "\192\175", "\237\160\128", "\244\144\128\128", "\224\128" } do
      fails("invalid UTF-8", D('"' .. bad .. '"'))
    end
  end)

  it("refuses what RFC 8259 does not allow", function()
    local bad = { "", " ", "[1,]", "{\"a\":1,}", "[1 2]", "{a:1}", "{'a':1}", "01", "1.", ".1", "+1", "1e",
      "-", "NaN", "Infinity", "[", "]", "{\"a\"}", "{\"a\":}", "tru", "nul", "\239\187\191{}", "1 2", "[]x",
      "/*c*/1", "\"abc", "[\"a\\", "\12{}" }
    for _, text in ipairs(bad) do
      local ok, err = D(text)
      assert.is_nil(ok, "accepted: " .. text)
      assert.truthy(err:match("^json: .* at byte %d+$"), err)
    end
  end)

  it("reports where the problem is, with the code invalid_json", function()
    local _, err, code = D('{"a":[1,2,x]}')
    assert.equal("json: unexpected character at byte 11", err)
    assert.equal("invalid_json", code)
    assert.equal("unencodable", select(3, E({ 1.5 })))
  end)

  it("refuses repeated member names unless duplicates = \"last\"", function()
    fails("repeated member name", D('{"a":1,"a":2}'))
    assert.equal(2, D('{"a":1,"a":2}', { duplicates = "last" }).a)
  end)

  it("stops at max_depth (default 64)", function()
    assert.truthy(D(string.rep("[", 64) .. string.rep("]", 64)))
    fails("nested too deep", D(string.rep("[", 65) .. string.rep("]", 65)))
    fails("nested too deep", D(string.rep('{"a":', 100000) .. "1" .. string.rep("}", 100000)))
    assert.truthy(D(string.rep("[", 500) .. string.rep("]", 500), { max_depth = 1000 }))
  end)

  it("uses opts.null for null when given", function()
    local NULL = {}
    assert.equal(NULL, D("[null]", { null = NULL })[1])
  end)

  it("reads what cjson writes, and agrees with cjson on a provider answer", function()
    local answer = '{"Data":{"Url":"https:\\/\\/3d.example\\/x?a=1","CodeForHash":"0A1B"},'
      .. '"ResultCode":"Success","ResultMessage":"","Exception":null}'
    assert.same(cjson.decode(answer), D(answer))
    local v = { list = { 1, 2, 3 }, name = "Ali \226\130\172", nested = { ok = true } }
    assert.same(v, D(cjson.encode(v)))
  end)

  it("round-trips its own output", function()
    local v = { a = { 1, -2, { b = "\0\31\"\\" } }, c = "Ali Yılmaz", d = false, e = core.json_null }
    assert.same(v, D(E(v)))
  end)

  it("raises for misused options", function()
    assert.has_error(function() D("1", { numbers = "float" }) end)
    assert.has_error(function() D("1", { duplicates = "first" }) end)
    assert.has_error(function() D("1", { max_depth = 5000 }) end)
    assert.has_error(function() D("1", { text = "Amount" }) end)
    assert.has_error(function() D(nil) end)
  end)
end)

describe("core.json_encode on paykit.gateway's bodies", function()
  -- gateway.json writes through the C writer; gateway.json_lua is the Lua writer it falls
  -- back to: the two must agree byte for byte on what the providers send.
  local gateway = require "paykit.gateway"
  local moka = require "paykit.providers.moka"

  it("writes Moka payment bodies byte for byte as gateway.json does", function()
    local gw = assert(moka.new { dealer_code = "1731", username = "u", password = "p\"\\x",
      base_url = "http://127.0.0.1:1", client_ip = "192.0.2.1" })
    local payments = {
      { amount = "10.00", redirect_url = "https://shop.example/r?a=1&b=2", installments = 3, pre_auth = true,
        card = { holder = "Çağrı \"Ö\" \\ /", number = "4111111111111111", exp_month = "1", exp_year = "31", cvc = "1234" },
        description = "sekme ve \"tırnak\" 😀",
        basket = { { product_id = 1, unit_price = "4.00", quantity = 1 }, { product_code = "P-2", unit_price = "3.00", quantity = 2 } },
        buyer = { full_name = "A B", gsm = "555", email = "a@b.example", address = "Cad. 5/7 \\ İstanbul" },
        customer = { dealer_customer_id = "9", first_name = "Ali", last_name = "V" } },
      { amount_minor = 2750, currency = "USD", card_token = "tok-1", redirect_url = "https://shop.example", reference = "r-1" },
    }
    for _, p in ipairs(payments) do
      local req = assert(moka._payment_request(gw, p, true))
      local body = gateway.put(gateway.put(gateway.object(), "PaymentDealerAuthentication", gw._auth()),
        "PaymentDealerRequest", req)
      local expect = gateway.json_lua(body)
      assert.truthy(expect:find('"Amount":', 1, true))
      assert.equal(expect, E(body))
      assert.equal(expect, gateway.json(body))
    end
  end)
end)

describe("core.json_raw, json_unknown_key, text_plain, digits_luhn (the provider layer's fast path)", function()
  it("json_raw keeps a value's JSON text, written as it is wherever the raw value is put", function()
    local r = assert(core.json_raw(ordered("U", 'a"b\\c', "N", 12)))
    assert.equal('{"U":"a\\"b\\\\c","N":12}', E(r))
    assert.equal('[{"U":"a\\"b\\\\c","N":12},{"x":{"U":"a\\"b\\\\c","N":12}}]', E({ r, { x = r } }))
    -- what the writer refuses is refused when the raw value is made
    fails("not an integer", core.json_raw({ 0.5 }))
    fails("UTF-8", core.json_raw("\255"))
    -- printing one shows no text (a raw value can hold a password)
    assert.falsy(tostring(r):find("a\"b", 1, true))
    -- another userdata is still refused
    fails("userdata", E({ io.stdout }))
  end)

  it("json_unknown_key names the first key not in the set, nothing when all are", function()
    assert.is_nil(core.json_unknown_key({ a = 1, b = 2 }, { a = true, b = true, c = true }))
    assert.is_nil(core.json_unknown_key({}, {}))
    assert.equal("zz", core.json_unknown_key({ a = 1, zz = 2 }, { a = true }))
    assert.equal(1, core.json_unknown_key({ "x" }, { a = true }))
    assert.equal("a", core.json_unknown_key({ a = 1 }, { a = false }))
  end)

  it("text_plain refuses control characters (tab, LF, CR only when multiline)", function()
    assert.is_true(core.text_plain("plain text, ç 😀"))
    assert.is_true(core.text_plain(""))
    for _, c in ipairs { "\0", "\1", "\9", "\10", "\13", "\27", "\31", "\127" } do
      assert.is_false(core.text_plain("a" .. c .. "b"), c:byte())
    end
    assert.is_true(core.text_plain("a\tb\r\nc", true))
    assert.is_false(core.text_plain("a\0b", true))
    assert.is_false(core.text_plain("a\127", true))
  end)

  it("digits_luhn: whether the text is digits, and whether they pass Luhn (published test numbers)", function()
    for _, n in ipairs { "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
        "79927398713", "0" } do
      assert.same({ true, true }, { core.digits_luhn(n) }, n)
    end
    assert.same({ true, false }, { core.digits_luhn("4111111111111112") })
    assert.same({ true, false }, { core.digits_luhn("79927398710") })
    for _, n in ipairs { "", "4111 1111", "12a", "-1", "١٢" } do
      assert.same({ false, false }, { core.digits_luhn(n) }, n)
    end
  end)
end)

describe("core.json_keys (an ordered object's member names written once)", function()
  it("writes the same text as the names written each time, and names the place of an error", function()
    local keys = { "A", 'B"q', "Ç", "D" }
    local plain = ordered("A", 1, 'B"q', "x", "Ç", { 2 }, "D", 4)
    local expect = assert(E(plain))
    keys[0] = assert(core.json_keys(keys))
    assert.equal(expect, E(setmetatable({ _k = keys, _v = { 1, "x", { 2 }, 4 } }, Ordered)))
    fails('at $.B\\"q[1]', E(setmetatable({ _k = keys, _v = { 1, { 0.5 }, 3, 4 } }, Ordered)))
    fails("member without a value at $.D", E(setmetatable({ _k = keys, _v = { 1, "x", 3 } }, Ordered)))
  end)

  it("is used only when it is the list's own count of names; refused names are refused when made", function()
    local keys = { "A", "B" }
    local k0 = assert(core.json_keys(keys))
    local other = { "Z" }
    other[0] = k0 -- another count: the names of the list itself are written
    assert.equal('{"Z":1}', E(setmetatable({ _k = other, _v = { 1 } }, Ordered)))
    fails("not a string", core.json_keys({ 1 }))
    fails("UTF-8", core.json_keys({ "\255" }))
  end)
end)

describe("core.json_decode and core.json_pick on generated strings (16- and 8-byte scanning)", function()
  it("read every string as a byte-by-byte model does, wherever its pieces fall in the text", function()
    -- json.c scans a string 16 bytes at a time (SSE2) while 16 bytes of the text are left, then
    -- 8 at a time while 8 are: strings of plain runs of 0-39 bytes and pieces that need a look,
    -- each piece with its decoded bytes
    -- (or refused), at random offsets in the text, with random text after the string
    local rnd = prng(20261203)
    local PLAIN = "abcXYZ019 -_./:~!#$%&'()*+,;<=>?@[]^`{|}\127"
    local PIECES = { { '\\"', '"' }, { "\\\\", "\\" }, { "\\/", "/" }, { "\\n", "\n" }, { "\\u00e9", "é" },
      { "\\ud83d\\udcb3", "\240\159\146\179" }, { "é", "é" }, { "€", "€" }, { "\240\159\146\179", "\240\159\146\179" },
      { "\1" }, { "\31" }, { "\n" }, { "\255" }, { "\226\130" }, { "\192\128" }, { "\237\160\128" }, { "\\x" },
      { "\\ud83d" } }
    local map = core.json_map({ "pad", "k" }, {})
    for i = 1, 4000 do
      local src, want, valid = {}, {}, true
      for _ = 1, rnd(6) do
        local run = {}
        for j = 1, rnd(40) - 1 do local k = rnd(#PLAIN); run[j] = PLAIN:sub(k, k) end
        src[#src + 1] = table.concat(run); want[#want + 1] = table.concat(run)
        if rnd(3) == 1 then
          local piece = PIECES[rnd(#PIECES)]
          src[#src + 1] = piece[1]
          if piece[2] then want[#want + 1] = piece[2] else valid = false end
        end
      end
      local pad = string.rep("p", rnd(12) - 1)
      local text = '{"pad":"' .. pad .. '","k":"' .. table.concat(src) .. '"' .. string.rep(" ", rnd(10) - 1) .. "}"
      local v, err = D(text)
      local kind, p1, p2 = core.json_pick(text, map)
      if valid then
        assert(v and v.k == table.concat(want), "case " .. i .. ": " .. tostring(err))
        assert(kind == "object" and p1 == pad and p2 == v.k, "pick, case " .. i)
      else
        assert(v == nil and kind == nil, "case " .. i .. " was read")
      end
    end
  end)

  it("finds a map's members by name whatever their lengths, long names (63 bytes and more) too", function()
    -- json_pick passes over a member whose name has a length no name of the map has
    local names = { "", "a", string.rep("n", 62), string.rep("n", 63), string.rep("n", 64), string.rep("m", 64),
      string.rep("n", 100) }
    local map = core.json_map({ names[2], names[3], names[4], names[6], { names[7], names[5] } }, {})
    for round = 1, 200 do
      local members, want = {}, {}
      for i = 1, 8 do
        local name = names[(round * 7 + i * 3) % #names + 1]
        local value = round * 10 + i
        if name == names[7] then
          members[i] = '"' .. name .. '":{"' .. names[5] .. '":' .. value .. ',"' .. names[4] .. '":0}'
          want[5] = value
        else
          members[i] = '"' .. name .. '":' .. value
          for slot, n in ipairs { names[2], names[3], names[4], names[6] } do if n == name then want[slot] = value end end
        end
      end
      local text = "{" .. table.concat(members, ",") .. "}"
      local got = { core.json_pick(text, map) }
      assert.are.equal("object", got[1])
      for slot = 1, 5 do assert.are.equal(want[slot], got[slot + 1], text .. " " .. slot) end
    end
  end)
end)
