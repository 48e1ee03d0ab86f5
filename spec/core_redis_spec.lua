-- paykit.core's Redis part (csrc/redis.c on libhiredis): the reply reader nginx uses, the
-- command encoder, the Cluster key slot (vectors from the Redis Cluster specification) and a
-- connection to a real redis-server.
local core = require "paykit.core"
local rs = require "spec.support.redis"

describe("core.redis_slot", function()
  it("is CRC16/XMODEM of the key modulo 16384 (the specification's check value)", function()
    assert.are.equal(0x31C3, core.redis_slot("123456789")) -- 0x31C3 < 16384
    assert.are.equal(0, core.redis_slot(""))
  end)

  it("hashes only a non-empty {hash tag}", function()
    assert.are.equal(core.redis_slot("user1000"), core.redis_slot("{user1000}.following"))
    assert.are.equal(core.redis_slot("{user1000}.followers"), core.redis_slot("{user1000}.following"))
    assert.are.equal(core.redis_slot("bar"), core.redis_slot("foo{bar}{zap}"))
    assert.are.equal(core.redis_slot("{bar"), core.redis_slot("foo{{bar}}zap"))
    assert.are.not_equal(core.redis_slot("bar"), core.redis_slot("foo{}{bar}"))
    assert.are.equal(core.redis_slot("paykit:{moka:o-1}:rec"), core.redis_slot("paykit:{moka:o-1}:grant"))
  end)
end)

describe("core.redis_format", function()
  it("writes a binary-safe RESP array of bulk strings", function()
    assert.are.equal("*3\r\n$3\r\nSET\r\n$3\r\na\0b\r\n$2\r\n42\r\n", core.redis_format("SET", "a\0b", 42))
  end)

  it("raises for a table argument", function()
    assert.has_error(function() core.redis_format("SET", {}) end)
  end)
end)

describe("core.redis_reader", function()
  it("waits for a whole reply, then gives it as a Lua value", function()
    local r = core.redis_reader()
    assert(r:feed("$5\r\nhel"))
    assert.is_nil(r:get())
    assert(r:feed("lo\r\n:42\r\n$-1\r\n*2\r\n+OK\r\n*1\r\n$1\r\nx\r\n"))
    assert.are.equal("hello", r:get())
    assert.are.equal(42, r:get())
    assert.are.equal(false, r:get(), "a nil bulk is false")
    local t = r:get()
    assert.are.equal("OK", t[1]); assert.are.equal("x", t[2][1])
    assert.is_nil(r:get())
  end)

  it("answers an error reply as nil, message, code (and inside an array as {err, code})", function()
    local r = core.redis_reader()
    r:feed("-NOSCRIPT No matching script\r\n*2\r\n-MOVED 3999 127.0.0.1:6381\r\n:1\r\n")
    local v, msg, code = r:get()
    assert.is_nil(v); assert.are.equal("NOSCRIPT No matching script", msg); assert.are.equal("NOSCRIPT", code)
    local t = r:get()
    assert.are.equal("MOVED", t[1].code); assert.are.equal(1, t[2])
  end)

  it("refuses bytes that are not RESP", function()
    local r = core.redis_reader()
    r:feed("?what\r\n")
    local v, msg, code = r:get()
    assert.is_nil(v); assert.are.equal("protocol", code); assert.is_string(msg)
  end)
end)

describe("core.redis_connect", function()
  local srv
  lazy_setup(function() srv = rs.start { port = 16431 } end)
  lazy_teardown(function() srv:stop() end)

  it("sends commands and pipelines and reads their replies", function()
    local c = assert(core.redis_connect("127.0.0.1", 16431, 1000, 1000))
    assert.are.equal("OK", c:call("SET", "bin", "\0\1\2"))
    assert.are.equal("\0\1\2", c:call("GET", "bin"))
    local res = assert(c:pipeline { { "INCR", "n" }, { "INCR", "n" }, { "NOPE" } })
    assert.are.equal(1, res[1]); assert.are.equal(2, res[2]); assert.are.equal("ERR", res[3].code)
    c:close()
    assert.has_error(function() c:call("PING") end)
  end)

  it("answers connect when nothing listens", function()
    local c, msg, code = core.redis_connect("127.0.0.1", 16432, 500, 500)
    assert.is_nil(c); assert.are.equal("connect", code); assert.is_string(msg)
  end)

  it("answers timeout when the server is slower than the read timeout, and is then broken", function()
    local c = assert(core.redis_connect("127.0.0.1", 16431, 1000, 200))
    local v, _, code = c:call("DEBUG", "SLEEP", "1")
    assert.is_nil(v); assert.are.equal("timeout", code)
    assert.is_true(c:broken())
    c:close()
  end)
end)
