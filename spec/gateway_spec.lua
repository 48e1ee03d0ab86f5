-- paykit.gateway: the pieces of the uniform flow every provider shares.
local gateway = require "paykit.gateway"

describe("gateway.seen (the bounded memory of processed notifications)", function()
  it("reports a key as a duplicate the second time", function()
    local s = gateway.seen(4)
    assert.is_false(s:add("a"))
    assert.is_true(s:add("a"))
    assert.is_true(s:has("a"))
    assert.is_false(s:has("b"))
  end)

  it("forgets the oldest key, and only it, once full", function()
    local s = gateway.seen(3)
    for _, k in ipairs { "a", "b", "c", "d" } do s:add(k) end
    assert.are.equal(3, s:size())
    assert.is_false(s:has("a"))
    for _, k in ipairs { "b", "c", "d" } do assert.is_true(s:has(k), k) end
    assert.is_false(s:add("a")) -- new again
  end)

  it("keeps the first value stored with a key, and forgets it with the key", function()
    local s = gateway.seen(2)
    local first = { status = "paid" }
    s:add("k", first)
    assert.is_true(s:add("k", { status = "failed" }))
    assert.are.equal(first, s:get("k"))
    s:add("x"); s:add("y")
    assert.is_nil(s:get("k"))
    assert.is_false(s:has("k"))
  end)

  it("gives no value for a key added without one", function()
    local s = gateway.seen(2)
    s:add("plain")
    assert.is_true(s:has("plain"))
    assert.is_nil(s:get("plain"))
  end)
end)

describe("gateway.reply", function()
  it("is the plain-text reply a notification handler sends back", function()
    assert.are.same({ status = 200, body = "OK", content_type = "text/plain" }, gateway.reply())
    assert.are.same({ status = 401, body = "not signed", content_type = "text/plain" }, gateway.reply(401, "not signed"))
  end)
end)
