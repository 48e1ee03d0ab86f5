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
