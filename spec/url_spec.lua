-- paykit.url: the one parser of absolute http(s) URLs (transport, validators, OAuth signer).
local url = require "paykit.url"

describe("paykit.url.parse", function()
  it("splits a URL, lowercasing scheme and host and dropping a default port", function()
    assert.are.same({ scheme = "https", host = "service.example", port = 443, tls = true,
      authority = "service.example", target = "/Pay/Now?x=1", path = "/Pay/Now" },
      url.parse("HTTPS://Service.Example:443/Pay/Now?x=1#frag"))
  end)

  it("keeps a non-default port in the authority and gives / as the least target", function()
    local u = url.parse("http://127.0.0.1:8790")
    assert.are.equal(8790, u.port)
    assert.are.equal("127.0.0.1:8790", u.authority)
    assert.are.equal("/", u.target)
    assert.are.equal("/", url.parse("http://h?q=1").path)
    assert.are.equal("/?q=1", url.parse("http://h?q=1").target)
  end)

  it("accepts a bracketed IPv6 host", function()
    local u = url.parse("http://[::1]:8080/x")
    assert.are.equal("[::1]", u.host)
    assert.are.equal(8080, u.port)
  end)

  for _, case in ipairs {
    { "ftp://h/x", "scheme" }, { "h/x", "scheme" }, { "http:///x", "host" },
    { "http://user:pw@h/x", "user information" }, { "http://h:0/x", "port" }, { "http://h:65536/", "port" },
    { "http://h:x/", "port" }, { "http://h/a b", "spaces" }, { "http://h/a\nb", "control" },
    { "http://a..b/", "host" }, { "http://-a/", "host" }, { "http://a_b/", "host" },
  } do
    it("refuses " .. string.format("%q", case[1]) .. " saying what is wrong", function()
      local u, msg = url.parse(case[1])
      assert.is_nil(u)
      assert.truthy(msg:find(case[2], 1, true), msg)
    end)
  end
end)

describe("paykit.url.is_http", function()
  it("is true for an absolute http(s) URL and false for anything else", function()
    assert.is_true(url.is_http("https://shop.example/return?o=1"))
    assert.is_false(url.is_http("/return"))
    assert.is_false(url.is_http(42))
    assert.is_false(url.is_http(nil))
    assert.is_false(url.is_http("https://shop.example/" .. ("x"):rep(2048)))
  end)
end)
