-- Errors that say what to do (issue 9, item 9), for Moka, MoCoPay and Zippy alike: every
-- public call of every provider (listed from the provider's own methods, so that a new call
-- cannot be left out) refuses an unknown field of a table it is given by its name, before
-- any request (a counting nginx on 127.0.0.1 must see none); every call made with a dot says
-- to use a colon; an HTTP 404 names the URL and says to check base_url; Zippy without
-- notice_keys fails at construction.
local paykit = require "paykit"
local core = require "paykit.core"
local nginx = require "spec.support.nginx"

local PORT = tonumber(os.getenv("PAYKIT_TEST_KIT_ERRORS_PORT") or "18887")
local BASE = "http://127.0.0.1:" .. PORT

-- Counts every request but /count's, and answers 404 (nothing is served here).
local CONF = [[
  lua_shared_dict kit_errors 1m;
  server {
    listen 127.0.0.1:${PORT};
    location = /count { content_by_lua_block { ngx.print(ngx.shared.kit_errors:get("n") or 0) } }
    location / {
      content_by_lua_block {
        ngx.shared.kit_errors:incr("n", 1, 0)
        ngx.exit(404)
      }
    }
  }
]]

local function count()
  local res = assert(core.http_client {}:request { method = "GET", url = BASE .. "/count" })
  return assert(tonumber(res.body))
end

local NOTICE_KEYS = { [1] = "zippy-notice-key-1" }
local NEW = {
  moka = function(o)
    return paykit.moka(setmetatable(o or {}, { __index = { dealer_code = "1234", username = "u", password = "p",
      base_url = BASE, client_ip = "203.0.113.7" } }))
  end,
  mocopay = function(o)
    return paykit.mocopay(setmetatable(o or {}, { __index = { api_key = "k", api_secret = "s", base_url = BASE } }))
  end,
  zippy = function(o)
    return paykit.zippy(setmetatable(o or {}, { __index = { consumer_key = "ck", consumer_secret = "cs", base_url = BASE,
      notice_keys = NOTICE_KEYS } }))
  end,
}

local UUID = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"

-- Every public call: `field` = a call with an unknown field (the field it must name);
-- `positional` = a call taking strings only, given a table in their place (refused, nothing
-- sent); `not_checked` = why the tables it takes are not the caller's to get wrong (they are
-- sent as given, or are the provider's own data).
local CALLS = {
  moka = {
    purchase = { field = "reurn_url", call = function(gw)
      return gw:purchase { amount = "1.00", reference = "r-1", card = { number = "4111111111111111", exp_month = "12",
        exp_year = "2030", cvc = "123" }, reurn_url = "https://shop.example/" }
    end },
    pay = { field = "amout", call = function(gw)
      return gw:pay { amout = "1.00", reference = "r-1", card = { number = "4111111111111111", exp_month = "12",
        exp_year = "2030", cvc = "123" } }
    end },
    start_3d = { field = "reurn_url", call = function(gw)
      return gw:start_3d { amount = "1.00", reference = "r-1", card = { number = "4111111111111111", exp_month = "12",
        exp_year = "2030", cvc = "123" }, reurn_url = "https://shop.example/" }
    end },
    call = { not_checked = "sends the request block it is given, in Moka's own names" },
    commit = { field = "idempotant", call = function(gw)
      return gw:commit("x", { method = "POST", path = "/x", idempotant = true })
    end },
    capture = { field = "reurn_url", call = function(gw) return gw:capture { reference = "r-1", reurn_url = "x" } end },
    void = { field = "reson", call = function(gw) return gw:void { reference = "r-1", reson = 2 } end },
    refund = { field = "amout", call = function(gw) return gw:refund { reference = "r-1", amout = "1.00" } end },
    approve_pool = { field = "referense", call = function(gw) return gw:approve_pool { referense = "r-1" } end },
    undo_pool = { field = "order", call = function(gw) return gw:undo_pool { reference = "r-1", order = "o" } end },
    payment_details = { field = "paymentid", call = function(gw) return gw:payment_details { paymentid = "1" } end },
    bin_info = { field = "bim", call = function(gw) return gw:bin_info { bim = "526911" } end },
    installments = { field = "three_ds", call = function(gw)
      return gw:installments { bin = "526911", amount = "10.00", three_ds = true }
    end },
    add_customer = { field = "emial", call = function(gw) return gw:add_customer { customer_code = "c", emial = "x" } end },
    add_card = { field = "card_nmae", call = function(gw) return gw:add_card { customer_code = "c", card_nmae = "x" } end },
    list_cards = { field = "customer", call = function(gw) return gw:list_cards { customer = "c" } end },
    remove_card = { field = "token", call = function(gw) return gw:remove_card { token = "t" } end },
    status = { field = "referense", call = function(gw) return gw:status { referense = "r-1" } end },
    complete = { field = "confrim", call = function(gw)
      return gw:complete("hashValue=x", { code_for_hash = "C", reference = "r-1" }, { confrim = true })
    end },
    notification = { field = "code_for_hsh", call = function(gw)
      return gw:notification({ method = "POST", body = "hashValue=x" }, { code_for_hsh = "C" })
    end },
    verify_3d = { not_checked = "takes Moka's posted fields (its own names) and the keep purchase answered" },
  },
  mocopay = {
    call = { not_checked = "signs and sends the parameters it is given, in MoCoPay's own names" },
    commit = { field = "idempotant", call = function(gw)
      return gw:commit("x", { method = "GET", path = "/x", idempotant = true })
    end },
    init_payment = { field = "callbakUrl", call = function(gw)
      return gw:init_payment { pid = "12000", userId = "u-1", referenceId = "r-1", callbakUrl = "https://shop.example/" }
    end },
    purchase = { field = "reurn_url", call = function(gw)
      return gw:purchase { pid = "12000", reference = "r-1", user_id = "u-1", reurn_url = "https://shop.example/" }
    end },
    verify_payment = { field = "sesionId", call = function(gw) return gw:verify_payment { sesionId = "s-1" } end },
    status = { field = "sesionId", call = function(gw) return gw:status { sesionId = "s-1" } end },
    notification = { field = "kepp", call = function(gw)
      return gw:notification({ method = "GET", path = "/notify", query = "sessionId=s-1" }, { kepp = function() end })
    end },
    complete = { not_checked = "takes the buyer's return (MoCoPay's parameters) and the keep purchase answered" },
  },
  zippy = {
    call = { field = "qurey", call = function(gw) return gw:call("GET", "/sellers", { qurey = {} }) end },
    commit = { field = "idempotant", call = function(gw)
      return gw:commit("x", { method = "GET", path = "/x", idempotant = true })
    end },
    create_seller = { field = "emial", call = function(gw)
      return gw:create_seller { uuid = "s-1", status = "ACTIVE", name = "n", emial = "e@x.example" }
    end },
    update_seller = { field = "nmae", call = function(gw) return gw:update_seller("s-1", { nmae = "n" }) end },
    create_product = { field = "seler_id", call = function(gw)
      return gw:create_product { uuid = UUID, name = "n", external_id = "e", seler_id = "s-1" }
    end },
    list_products = { field = "seler_id", call = function(gw) return gw:list_products { seler_id = "s-1" } end },
    transaction_body = { field = "prise", call = function(gw) return gw:transaction_body { prise = "1.00" } end },
    create_transaction = { field = "prise", call = function(gw) return gw:create_transaction { prise = "1.00" } end },
    test_notice = { field = "ext_transaction", call = function(gw) return gw:test_notice { ext_transaction = "t" } end },
    purchase = { field = "reurn_url", call = function(gw)
      return gw:purchase { product_id = UUID, amount = "1.00", currency = "TRY", reurn_url = "https://shop.example/" }
    end },
    get_seller = { positional = function(gw) return gw:get_seller { uuid = "s-1" } end },
    get_terms = { positional = function(gw) return gw:get_terms { uuid = "s-1" } end },
    delete_seller = { positional = function(gw) return gw:delete_seller("s-1", { force = true }) end },
    get_product = { positional = function(gw) return gw:get_product { uuid = UUID } end },
    list_sellers = { positional = function(gw) return gw:list_sellers { status = "ACTIVE" } end },
    ping = { positional = function(gw) return gw:ping { verbose = true } end },
    payment_url = { positional = function(gw) return gw:payment_url { token = "t" } end },
    check_notice = { positional = function(gw) return gw:check_notice { qs = "x" } end },
    verify_notice = { positional = function(gw) return gw:verify_notice { raw = "x" } end },
    status = { positional = function(gw) return gw:status { reference = "r-1" } end },
    complete = { not_checked = "takes the return's raw query (Zippy's bytes) and the keep purchase answered" },
    notification = { not_checked = "takes Zippy's callback: the request, or its decoded parameters (Zippy's names)" },
  },
}

local function method_names(name)
  local P = require(paykit.registry.get(name).module)
  local out = {}
  for k, v in pairs(P.methods) do
    if type(v) == "function" then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

local NAMES = { "moka", "mocopay", "zippy" }

describe("every public call of every provider", function()
  local srv
  lazy_setup(function() srv = nginx.start("kit_errors_spec", CONF, { PORT = PORT }) end)
  lazy_teardown(function() if srv then srv:stop() end end)

  for _, name in ipairs(NAMES) do
    describe(name, function()
      it("is in this spec's table, and the table names only calls that exist", function()
        local methods = method_names(name)
        assert.is_true(#methods >= 8, name .. " has " .. #methods .. " methods")
        local have = {}
        for _, m in ipairs(methods) do
          have[m] = true
          assert(CALLS[name][m], name .. ":" .. m .. " is a public call this spec does not check: add it to CALLS")
        end
        for m in pairs(CALLS[name]) do assert(have[m], name .. ":" .. m .. " is in CALLS but is not a call") end
      end)

      it("refuses an unknown field by its name, before any request", function()
        local gw = assert(NEW[name]())
        local before, n = count(), 0
        for _, m in ipairs(method_names(name)) do
          local c = CALLS[name][m]
          if c and c.field then
            n = n + 1
            local r, err = c.call(gw)
            assert(r == nil, name .. ":" .. m .. " took the unknown field " .. c.field)
            assert.is_table(err, name .. ":" .. m)
            assert.same({ "validation", "unknown_field", c.field }, { err.kind, err.code, err.field },
              name .. ":" .. m .. ": " .. tostring(err.message))
            assert(err.message:find("unknown field " .. c.field, 1, true), name .. ":" .. m .. ": " .. err.message)
          end
        end
        assert.is_true(n >= 5)
        assert.equal(before, count(), name .. ": a call with an unknown field sent a request")
      end)

      it("refuses a table where a call takes strings (or nothing), before any request", function()
        local gw = assert(NEW[name]())
        local before = count()
        for _, m in ipairs(method_names(name)) do
          local c = CALLS[name][m]
          if c and c.positional then
            local r, err = c.positional(gw)
            assert(r == nil, name .. ":" .. m .. " took a table in place of its arguments")
            assert(type(err) == "table" and err.kind ~= "transport" and err.kind ~= "timeout",
              name .. ":" .. m .. ": " .. tostring(err and err.message))
          end
        end
        assert.equal(before, count(), name .. ": a call given a table in place of strings sent a request")
      end)

      it("says to use a colon when any call is made with a dot", function()
        local gw = assert(NEW[name]())
        for _, m in ipairs(method_names(name)) do
          local ok, err = pcall(gw[m], { reference = "r-1" })
          assert(not ok, name .. ":" .. m .. " ran when called with a dot")
          assert(tostring(err):find("gw:" .. m, 1, true), name .. ":" .. m .. ": " .. tostring(err))
        end
      end)
    end)
  end

  it("names the URL of an HTTP 404 and says to check base_url, for each provider", function()
    local calls = {
      moka = function(gw) return gw:list_cards { customer_code = "c-1" } end,
      mocopay = function(gw) return gw:verify_payment "s-1" end,
      zippy = function(gw) return gw:get_seller "s-1" end,
    }
    for _, name in ipairs(NAMES) do
      local gw = assert(NEW[name] { base_url = BASE .. "/wrong-prefix", retry = false })
      local before = count()
      local r, err = calls[name](gw)
      assert.is_nil(r, name)
      assert.equal(before + 1, count(), name .. " sent its call once")
      assert.same({ "provider", "not_found", 404 }, { err.kind, err.code, err.status }, name .. ": " .. tostring(err.message))
      assert(err.message:find(BASE .. "/wrong-prefix/", 1, true), name .. ": " .. err.message)
      assert(err.message:find("check base_url", 1, true), name .. ": " .. err.message)
    end
  end)
end)

describe("Zippy's construction", function()
  it("fails without notice_keys, naming them", function()
    local gw, err = paykit.zippy { consumer_key = "ck", consumer_secret = "cs", base_url = BASE }
    assert.is_nil(gw)
    assert.same({ "config", "notice_keys", "required" }, { err.kind, err.field, err.code })
  end)
end)
