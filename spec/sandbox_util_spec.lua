-- The sandbox's own rules: it sends notifications to this machine only, and its sink and
-- outbox record what was sent.
local paykit = require "paykit"
local core = require "paykit.core"
local sb = require "spec.support.sandbox"

describe("the sandbox", function()
  local base

  local function call(method, path, body)
    local res = body and sb.post_json(path, body) or sb.request(method, path)
    return res, res.json
  end

  local function outbox_for(fragment)
    for _ = 1, 50 do
      local _, list = call("GET", "/_sandbox/outbox")
      local found = {}
      for _, e in ipairs(list) do
        if e.url:find(fragment, 1, true) then found[#found + 1] = e end
      end
      if #found > 0 then return found end
      os.execute("sleep 0.1")
    end
    return {}
  end

  lazy_setup(function() base = sb.start() end)
  lazy_teardown(function() sb.stop() end)

  local function pay_mocopay(notify_url)
    local gw = paykit.mocopay { api_key = "sandbox-app", api_secret = "sandbox-secret", base_url = base .. "/mocopay" }
    local r = assert(gw:purchase { pid = "12000", reference = "util-" .. core.random_hex(6), client_ip = "127.0.0.1",
                                   return_url = "https://shop.example/back", notify_url = notify_url })
    local res = call("POST", "/mocopay/_sandbox/act", { trn = r.redirect_url:match("trn=(%w+)"), action = "send-sms" })
    assert.are.equal(200, res.status)
  end

  it("delivers notifications to a loopback receiver and records them in the outbox", function()
    local sink = "util-" .. core.random_hex(4)
    pay_mocopay(base .. "/_sink/" .. sink)
    local sent = outbox_for("/_sink/" .. sink)
    assert.is_true(#sent >= 1)
    assert.are.equal(200, sent[1].status)
    local _, log = call("GET", "/_sink/" .. sink .. "/log")
    assert.is_true(#log >= 1)
    assert.are.equal("GET", log[1].method)
  end)

  it("runs the simulators without faults or a log where nginx has no shared dicts for them", function()
    local nginx = require "spec.support.nginx"
    local port = sb.port() + 9
    local srv = nginx.start("sandbox-util-nodict", [[
  init_by_lua_block { require("paykit.sandbox.util").configure{ port = ${PORT} } }
  server {
    listen 127.0.0.1:${PORT};
    location /zippy/ { content_by_lua_block { require("paykit.sandbox.util").dispatch("zippy") } }
    location /_sandbox/ { content_by_lua_block { require("paykit.sandbox.util").admin() } }
  }
]], { PORT = port })
    local ok, err = pcall(function()
      local at = "http://127.0.0.1:" .. port
      local res = sb.request("GET", at .. "/zippy/status")
      assert.are.equal(200, res.status)
      assert.are.same({ result = "OK" }, res.json)
      res = sb.request("GET", at .. "/_sandbox/faults")
      assert.are.equal(501, res.status)
      assert.truthy(res.json.error:find("lua_shared_dict", 1, true))
      assert.are.equal(200, sb.request("POST", at .. "/_sandbox/reset").status)
    end)
    srv:stop()
    assert(ok, err)
  end)

  it("sends nothing to a host off this machine", function()
    pay_mocopay("http://merchant.example/notify")
    local sent = outbox_for("merchant.example")
    assert.is_true(#sent >= 1)
    for _, e in ipairs(sent) do
      assert.is_nil(e.status)
      assert.truthy(tostring(e.error):find("off this machine", 1, true), tostring(e.error))
    end
  end)
end)

-- The fault module's pure parts (no nginx needed): matching, checking, shaping an answer.
describe("the sandbox's fault rules", function()
  local faults = require "paykit.sandbox.faults"
  local PROVIDERS = { moka = true, mocopay = true, zippy = true }

  it("matches a path exactly (trailing slashes aside) or by a prefix ending in *", function()
    assert.is_true(faults.path_matches(nil, "/anything"))
    assert.is_true(faults.path_matches("/v1/payment/initPayment", "/v1/payment/initPayment/"))
    assert.is_true(faults.path_matches("/v1/payment/initPayment/", "/v1/payment/initPayment"))
    assert.is_false(faults.path_matches("/PaymentDealer/DoDirectPayment", "/PaymentDealer/DoDirectPaymentThreeD"))
    assert.is_true(faults.path_matches("/PaymentDealer/*", "/PaymentDealer/DoVoid"))
    assert.is_true(faults.path_matches("/products/*", "/products/abc"))
    assert.is_false(faults.path_matches("/products/*", "/sellers/abc"))
    assert.is_true(faults.path_matches("/PaymentDealer/DoDirect*", "/PaymentDealer/DoDirectPaymentThreeD"))
  end)

  it("fills the defaults of a fault", function()
    assert.are.same({ provider = "moka", mode = "drop", count = 1 }, (faults.check({ provider = "moka", mode = "drop" }, PROVIDERS)))
    assert.are.same({ provider = "zippy", mode = "status", count = 2, status = 503, method = "POST" },
      (faults.check({ provider = "zippy", mode = "status", count = 2, method = "post" }, PROVIDERS)))
  end)

  it("names the field of a bad fault", function()
    local _, field, message = faults.check({ provider = "moka", mode = "truncate", keep = 1.5 }, PROVIDERS)
    assert.are.equal("keep", field)
    assert.truthy(message:find("keep", 1, true))
    _, field = faults.check({ provider = "moka", mode = "garbage", status = 500 }, PROVIDERS)
    assert.are.equal("status", field)
  end)

  it("says which modes run the simulator", function()
    local function p(t) return faults.processes(assert(faults.check(t, PROVIDERS))) end
    assert.is_false(p { provider = "moka", mode = "drop_before" })
    assert.is_true(p { provider = "moka", mode = "drop" })
    assert.is_true(p { provider = "moka", mode = "delay", delay_ms = 5 })
    assert.is_false(p { provider = "moka", mode = "status" })
    assert.is_true(p { provider = "moka", mode = "status", process = true })
    assert.is_true(p { provider = "moka", mode = "garbage" })
    assert.is_false(p { provider = "moka", mode = "garbage", process = false })
    assert.is_true(p { provider = "moka", mode = "truncate" })
  end)

  it("shapes the answer a fault sends", function()
    local answer = { status = 200, body = '{"ResultCode":"Success"}', content_type = "application/json", headers = { X = "1" } }
    local f = function(t) return assert(faults.check(t, PROVIDERS)) end
    assert.are.same({ 200, '{"ResultCode"', "application/json", { X = "1" } },
      { faults.shape(f { provider = "moka", mode = "truncate", keep = 13 }, answer) })
    local status, body = faults.shape(f { provider = "moka", mode = "truncate" }, answer) -- half of 24 bytes
    assert.are.same({ 200, '{"ResultCode' }, { status, body })
    status, body = faults.shape(f { provider = "moka", mode = "garbage" }, answer)
    assert.are.equal(200, status)
    assert.is_nil(require("cjson.safe").decode(body))
    local s2, b2, ct = faults.shape(f { provider = "moka", mode = "status", status = 502 }, nil)
    assert.are.same({ 502, "text/html; charset=utf-8" }, { s2, ct })
    assert.truthy(b2:find("502", 1, true))
    assert.are.same({ 200, answer.body, "application/json", { X = "1" } }, { faults.shape(nil, answer) })
  end)
end)
