-- A URL's user information (user:password@) is a secret: it must not reach a log line, an
-- error message or a hook's context, whichever C client serves the request (review1: on
-- main the wire client hands such a URL to libcurl, and the error names the URL in clear).
local http = require "paykit.http"
local redact = require "paykit.redact"

local SECRET = "S3cretPw9x"
local URL = "https://merchant:" .. SECRET .. "@paykit-userinfo.invalid/pay?x=1"

describe("a URL with user information", function()
  it("redact.text hides the password and a bare token before @", function()
    local out = redact.text("GET " .. URL .. " failed")
    assert.is_nil(out:find(SECRET, 1, true))
    assert.truthy(out:find("paykit-userinfo.invalid/pay", 1, true)) -- the host stays
    local tok = redact.text("https://sk_live_" .. SECRET .. "@api.example/x")
    assert.is_nil(tok:find(SECRET, 1, true))
    -- in JSON text as lua-cjson writes it ("/" escaped)
    local cj = redact.text(require("cjson").encode { return_url = "https://u:" .. SECRET .. "@shop.example/back" })
    assert.is_nil(cj:find(SECRET, 1, true), cj)
    assert.truthy(cj:find("shop.example", 1, true))
    -- an ordinary URL and an e-mail address are left alone
    assert.equal("https://api.example/a@b", redact.text("https://api.example/a@b"))
    assert.equal("mail me at a@b.example", redact.text("mail me at a@b.example"))
  end)

  for _, kind in ipairs { "auto", "wire", "curl" } do
    it("never reaches the log, the error or a hook (transport " .. kind .. ")", function()
      local lines, ctxs = {}, {}
      local t = http.new {
        transport = kind, retry = false,
        logger = function(_, line) lines[#lines + 1] = line end,
        hooks = { after = function(ctx) ctxs[#ctxs + 1] = ctx end },
      }
      local res, err = t:request { method = "POST", url = URL, body = "{}", op = "spec.userinfo" }
      t:close()
      assert.is_nil(res)
      assert.truthy(err and err.message)
      assert.is_nil(tostring(err.message):find(SECRET, 1, true), err.message)
      assert.truthy(#lines > 0)
      for _, l in ipairs(lines) do assert.is_nil(l:find(SECRET, 1, true), l) end
      assert.equal(1, #ctxs)
      assert.is_nil(tostring(ctxs[1].url):find(SECRET, 1, true), ctxs[1].url)
    end)
  end
end)
