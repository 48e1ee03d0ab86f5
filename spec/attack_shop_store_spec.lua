-- The example shop's Redis URL (examples/openresty/lua/shop/store.lua): "the launcher prints it
-- without the password" (README). Attacked with every URL form the parser accepts (it splits
-- user information at the last "@", so a password may hold an "@" as typed), and the parser
-- itself: what it accepts is exactly what the redacted form hides.
package.path = "./examples/openresty/lua/?.lua;./examples/openresty/lua/?/init.lua;" .. package.path
local shop_store = require "shop.store"

describe("the shop's Redis URL", function()
  local CASES = {
    { "redis://:s3cret@10.0.0.5:6379/2", "s3cret", "redis://:***@10.0.0.5:6379/2" },
    { "redis://app:s3cret@10.0.0.5", "s3cret", "redis://app:***@10.0.0.5" },
    { "redis://app:s3%40cret@h:1/0", "s3@cret", "redis://app:***@h:1/0" },
    { "redis://:p@ss@h:1", "p@ss", "redis://:***@h:1" },
    { "redis://app:a@b@c@h:1/3", "a@b@c", "redis://app:***@h:1/3" },
  }
  for _, c in ipairs(CASES) do
    it("is printed without any part of the password: " .. c[3], function()
      local o = assert(shop_store.parse_redis_url(c[1]))
      assert.are.equal(c[2], o.password, "the parser takes this password")
      local shown = shop_store.redacted(c[1])
      assert.are.equal(c[3], shown)
      assert.is_nil(shown:find(c[2], 1, true))
    end)
  end

  it("hides what looks like a password in a URL the parser refuses too", function()
    assert.is_nil(shop_store.parse_redis_url("redis://s3cret@h:1"))
    assert.is_nil(shop_store.redacted("redis://s3cret@h:1"):find("s3cret", 1, true))
  end)

  it("leaves a URL without credentials as it is", function()
    assert.are.equal("redis://10.0.0.5:6379/2", shop_store.redacted("redis://10.0.0.5:6379/2"))
  end)
end)
