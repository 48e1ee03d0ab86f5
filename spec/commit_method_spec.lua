-- gw:commit without a method: the body makes it a POST (paykit.http), and a POST may charge,
-- so it is never sent twice (review1: on main kit.wire.commit took a missing method for "not
-- POST" and marked the request idempotent: a reset after the request was read sent it 3 times).
local paykit = require "paykit"
local fault = require "spec.support.fault"

describe("gw:commit without a method", function()
  local server
  setup(function() server = fault.start() end)
  teardown(function() if server then server.stop() end end)

  local RETRY = { attempts = 3, base_delay = 0.01, max_delay = 0.02, deadline = 20 }
  local MAKE = {
    moka = function(base, kind)
      return assert(paykit.moka { dealer_code = "1730", username = "fault", password = "fault-pass",
        base_url = base, client_ip = "203.0.113.7", transport = kind, retry = RETRY })
    end,
    -- zippy signs the method: on main a missing one raised inside the signer
    zippy = function(base, kind)
      return assert(paykit.zippy { consumer_key = "fault-key", consumer_secret = "fault-secret",
        notice_keys = { [0] = "fault-notice-0" }, base_url = base, transport = kind, retry = RETRY })
    end,
  }
  for _, provider in ipairs { "moka", "zippy" } do for _, kind in ipairs { "wire", "curl" } do
    it("is sent once when the connection is reset after the request (" .. provider .. ", " .. kind .. ")", function()
      server.reset()
      local gw = MAKE[provider]("http://127.0.0.1:" .. fault.PORTS.http, kind)
      local answer, err = gw:commit("charge", { path = "/reset_before/charge", body = { amount = "1.00" } })
      local n = 0
      for _, r in ipairs(server.log().requests) do
        if r.cell == "reset_before" then
          n = n + 1
          assert.equal("POST", r.method)
        end
      end
      assert.equal(1, n)
      assert.is_nil(answer)
      assert.equal("recv", err.code)
      assert.is_false(err.retryable)
    end)
  end end
end)
