-- paykit.core crypto primitives: published vectors first, then edge cases.
local core = require "paykit.core"

local function rep_byte(b, n) return string.rep(string.char(b), n) end

local function bytes(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local TWO_BLOCK_448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
local TWO_BLOCK_896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
  .. "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"

describe("core.digest", function()
  describe("SHA-1 (FIPS 180 examples)", function()
    it("hashes \"abc\"", function()
      assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", core.digest("sha1", "abc", "hex"))
    end)
    it("hashes the empty string", function()
      assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", core.digest("sha1", "", "hex"))
    end)
    it("hashes the 448-bit two-block message", function()
      assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1", core.digest("sha1", TWO_BLOCK_448, "hex"))
    end)
  end)

  describe("SHA-256 (FIPS 180 examples)", function()
    it("hashes \"abc\"", function()
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        core.digest("sha256", "abc", "hex"))
    end)
    it("hashes the empty string", function()
      assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        core.digest("sha256", "", "hex"))
    end)
    it("hashes the 448-bit two-block message", function()
      assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        core.digest("sha256", TWO_BLOCK_448, "hex"))
    end)
  end)

  describe("SHA-512 (FIPS 180 examples)", function()
    it("hashes \"abc\"", function()
      assert.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        core.digest("sha512", "abc", "hex"))
    end)
    it("hashes the empty string", function()
      assert.equal("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        .. "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        core.digest("sha512", "", "hex"))
    end)
    it("hashes the 448-bit message", function()
      assert.equal("204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
        .. "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445",
        core.digest("sha512", TWO_BLOCK_448, "hex"))
    end)
    it("hashes the 896-bit two-block message", function()
      assert.equal("8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        .. "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
        core.digest("sha512", TWO_BLOCK_896, "hex"))
    end)
  end)

  describe("MD5 (RFC 1321 test suite)", function()
    local suite = {
      { "", "d41d8cd98f00b204e9800998ecf8427e" },
      { "a", "0cc175b9c0f1b6a831c399e269772661" },
      { "abc", "900150983cd24fb0d6963f7d28e17f72" },
      { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
      { "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
      { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f" },
      { string.rep("1234567890", 8), "57edf4a22be3c955ac49da2e2107b67a" },
    }
    for _, v in ipairs(suite) do
      it(("hashes %q"):format(v[1]), function()
        assert.equal(v[2], core.digest("md5", v[1], "hex"))
      end)
    end
  end)

  describe("output encodings", function()
    it("returns raw bytes by default", function()
      local raw = core.digest("sha256", "abc")
      assert.equal(32, #raw)
      assert.equal(unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), raw)
    end)
    it("returns raw bytes for \"raw\"", function()
      assert.equal(core.digest("sha1", "abc"), core.digest("sha1", "abc", "raw"))
    end)
    it("returns padded standard base64 for \"base64\"", function()
      -- SHA-1("abc") in base64
      assert.equal("qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", core.digest("sha1", "abc", "base64"))
    end)
  end)

  describe("binary input", function()
    it("hashes every byte of data containing NULs", function()
      -- expected values from `printf 'a\0b' | openssl dgst -sha256` and `printf '\0' | ...`
      assert.equal("59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138", core.digest("sha256", "a\0b", "hex"))
      assert.equal("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        core.digest("sha256", "\0", "hex"))
    end)
  end)

  describe("provider vectors", function()
    it("computes Moka's CheckKey sample as lowercase SHA-256 hex", function()
      assert.equal("ff4a6ee22aeafe87f7930f84b5ce2ad9655bfc6b5e430644a88c5b75a09fdee1",
        core.digest("sha256", "123456" .. "MK" .. "ZXCVBNVBN" .. "PD" .. "abcdef", "hex"))
    end)
    it("computes MoCoPay's request signature as base64 MD5", function()
      local s = "this.is.a.secret/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789"
      assert.equal("WETDyNQLx0+8BJ16vDgiVg==", core.digest("md5", s, "base64"))
    end)
  end)

  describe("misuse", function()
    it("raises on an unknown algorithm", function()
      assert.has_error(function() core.digest("sha3", "abc") end)
    end)
    it("raises on an unknown encoding", function()
      assert.has_error(function() core.digest("sha256", "abc", "base32") end)
    end)
    it("raises when data is not a string", function()
      assert.has_error(function() core.digest("sha256", {}) end)
    end)
  end)
end)

describe("core.hmac", function()
  describe("RFC 2202 HMAC-MD5", function()
    local cases = {
      { rep_byte(0x0b, 16), "Hi There", "9294727a3638bb1c13f48ef8158bfc9d" },
      { "Jefe", "what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738" },
      { rep_byte(0xaa, 16), rep_byte(0xdd, 50), "56be34521d144c88dbb8c733f0e8b3f6" },
      { bytes(1, 25), rep_byte(0xcd, 50), "697eaf0aca3a3aea3a75164746ffaa79" },
      { rep_byte(0x0c, 16), "Test With Truncation", "56461ef2342edc00f9bab995690efd4c" },
      { rep_byte(0xaa, 80), "Test Using Larger Than Block-Size Key - Hash Key First",
        "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd" },
      { rep_byte(0xaa, 80), "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "6f630fad67cda0ee1fb1f562db3aa53e" },
    }
    for i, c in ipairs(cases) do
      it("passes test case " .. i, function()
        assert.equal(c[3], core.hmac("md5", c[1], c[2], "hex"))
        local k = core.hmac_key("md5", c[1]) -- the prepared key, used twice
        assert.equal(c[3], k:mac(c[2], "hex"))
        assert.equal(c[3], k:mac(c[2], "hex"))
      end)
    end
  end)

  describe("RFC 2202 HMAC-SHA1", function()
    local cases = {
      { rep_byte(0x0b, 20), "Hi There", "b617318655057264e28bc0b6fb378c8ef146be00" },
      { "Jefe", "what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
      { rep_byte(0xaa, 20), rep_byte(0xdd, 50), "125d7342b9ac11cd91a39af48aa17b4f63f175d3" },
      { bytes(1, 25), rep_byte(0xcd, 50), "4c9007f4026250c6bc8414f9bf50c86c2d7235da" },
      { rep_byte(0x0c, 20), "Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04" },
      { rep_byte(0xaa, 80), "Test Using Larger Than Block-Size Key - Hash Key First",
        "aa4ae5e15272d00e95705637ce8a3b55ed402112" },
      { rep_byte(0xaa, 80), "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "e8e99d0f45237d786d6bbaa7965c7808bbff1a91" },
    }
    for i, c in ipairs(cases) do
      it("passes test case " .. i, function()
        assert.equal(c[3], core.hmac("sha1", c[1], c[2], "hex"))
        local k = core.hmac_key("sha1", c[1]) -- the prepared key, used twice
        assert.equal(c[3], k:mac(c[2], "hex"))
        assert.equal(c[3], k:mac(c[2], "hex"))
      end)
    end
  end)

  describe("RFC 4231 HMAC-SHA256 and HMAC-SHA512", function()
    local TC7_DATA = "This is a test using a larger than block-size key and a larger than block-size data."
      .. " The key needs to be hashed before being used by the HMAC algorithm."
    local cases = {
      { 1, rep_byte(0x0b, 20), "Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
          .. "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" },
      { 2, "Jefe", "what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
          .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737" },
      { 3, rep_byte(0xaa, 20), rep_byte(0xdd, 50),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
          .. "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb" },
      { 4, bytes(1, 25), rep_byte(0xcd, 50),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
          .. "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" },
      { 6, rep_byte(0xaa, 131), "Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
          .. "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" },
      { 7, rep_byte(0xaa, 131), TC7_DATA,
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
          .. "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58" },
    }
    for _, c in ipairs(cases) do
      it("passes test case " .. c[1] .. " with SHA-256", function()
        assert.equal(c[4], core.hmac("sha256", c[2], c[3], "hex"))
        local k = core.hmac_key("sha256", c[2])
        assert.equal(c[4], k:mac(c[3], "hex"))
        assert.equal(c[4], k:mac(c[3], "hex"))
      end)
      it("passes test case " .. c[1] .. " with SHA-512", function()
        assert.equal(c[5], core.hmac("sha512", c[2], c[3], "hex"))
        local k = core.hmac_key("sha512", c[2])
        assert.equal(c[5], k:mac(c[3], "hex"))
        assert.equal(c[5], k:mac(c[3], "hex"))
      end)
    end
    it("passes test case 5 (truncated to 128 bits)", function()
      local key, data = rep_byte(0x0c, 20), "Test With Truncation"
      assert.equal("a3b6167473100ee06e0c796c2955552b", core.hmac("sha256", key, data, "hex"):sub(1, 32))
      assert.equal("415fad6271580a531d4179bc891d87a6", core.hmac("sha512", key, data, "hex"):sub(1, 32))
    end)
  end)

  describe("edge cases", function()
    it("accepts an empty key and empty data", function()
      assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
        core.hmac("sha256", "", "", "hex"))
    end)
    it("uses every byte of a key containing NULs", function()
      assert.not_equal(core.hmac("sha256", "k\0a", "m", "hex"), core.hmac("sha256", "k\0b", "m", "hex"))
    end)
    it("returns raw bytes by default and base64 on request", function()
      local raw = core.hmac("sha256", "Jefe", "what do ya want for nothing?")
      assert.equal(32, #raw)
      assert.equal(core.b64_encode(raw), core.hmac("sha256", "Jefe", "what do ya want for nothing?", "base64"))
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", core.hex_encode(raw))
    end)
    it("raises on an unknown algorithm", function()
      assert.has_error(function() core.hmac("sha384", "k", "d") end)
    end)
    it("raises on an unknown encoding", function()
      assert.has_error(function() core.hmac("sha256", "k", "d", "HEX") end)
    end)
  end)

  describe("provider vectors", function()
    it("computes Zippy's OAuth 1.0 HMAC-SHA1 signature of the worked example", function()
      local base = "GET&http%3A%2F%2F127.0.0.1%3A2605%2Fsellers&oauth_consumer_key%3Ddpf43f3p2l4k3l03"
        .. "%26oauth_nonce%3Dabc%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1700000000"
        .. "%26oauth_token%3Dnotimplemented%26oauth_version%3D1.0"
      assert.equal("467mnp5J8iEZ/5XGoc2Qz1jqA6s=", core.hmac("sha1", "kd94hf93k423kf44&", base, "base64"))
      assert.equal("467mnp5J8iEZ/5XGoc2Qz1jqA6s=", core.hmac_key("sha1", "kd94hf93k423kf44&"):mac(base, "base64"))
    end)
  end)
end)

describe("core.hmac_key", function()
  it("gives core.hmac's bytes for message after message with one key", function()
    local k = core.hmac_key("sha256", "Jefe")
    for i = 1, 50 do
      local m = string.rep("m", i * 7)
      assert.equal(core.hmac("sha256", "Jefe", m, "hex"), k:mac(m, "hex"))
    end
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      k:mac("what do ya want for nothing?", "hex"))
  end)
  it("keeps keys apart and uses every byte of a key with NULs", function()
    local a, b = core.hmac_key("sha1", "k\0a"), core.hmac_key("sha1", "k\0b")
    assert.not_equal(a:mac("m"), b:mac("m"))
    assert.equal(core.hmac("sha1", "k\0a", "m"), a:mac("m"))
  end)
  it("accepts an empty key and empty data; raw by default, base64 on request", function()
    local k = core.hmac_key("sha256", "")
    assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", k:mac("", "hex"))
    assert.equal(32, #k:mac(""))
    assert.equal(core.b64_encode(k:mac("x")), k:mac("x", "base64"))
  end)
  it("never shows its key", function()
    local k = core.hmac_key("sha1", "the-secret-key")
    assert.equal("paykit.hmac_key (sha1)", tostring(k))
    assert.is_nil(tostring(k):find("secret", 1, true))
    assert.equal("paykit.hmac_key", getmetatable(k))
  end)
  it("raises on misuse", function()
    assert.has_error(function() core.hmac_key("sha384", "k") end)
    assert.has_error(function() core.hmac_key("sha1", "k"):mac({}) end)
    assert.has_error(function() core.hmac_key("sha1", "k"):mac("d", "HEX") end)
    assert.has_error(function() core.hmac_key("sha1", "k").mac("d") end)
  end)
end)

describe("core.hex_encode / core.hex_decode", function()
  local rfc4648 = {
    { "", "" }, { "f", "66" }, { "fo", "666F" }, { "foo", "666F6F" }, { "foob", "666F6F62" },
    { "fooba", "666F6F6261" }, { "foobar", "666F6F626172" },
  }
  for _, v in ipairs(rfc4648) do
    it(("encodes %q as the RFC 4648 base16 vector, in lowercase"):format(v[1]), function()
      assert.equal(v[2]:lower(), core.hex_encode(v[1]))
    end)
    it(("decodes the RFC 4648 base16 vector %q"):format(v[2]), function()
      assert.equal(v[1], core.hex_decode(v[2]))
    end)
  end
  it("decodes lowercase and mixed case", function()
    assert.equal("\171\205\239", core.hex_decode("abCDeF"))
  end)
  it("round-trips every byte value, NUL included", function()
    local all = bytes(0, 255)
    local h = core.hex_encode(all)
    assert.equal(512, #h)
    assert.equal("000102", h:sub(1, 6))
    assert.equal("fdfeff", h:sub(-6))
    assert.equal(all, core.hex_decode(h))
  end)
  it("round-trips data longer than one Lua buffer", function()
    local big = string.rep(bytes(0, 255), 200)
    assert.equal(big, core.hex_decode(core.hex_encode(big)))
  end)
  it("rejects odd-length input", function()
    local s, msg, code = core.hex_decode("abc")
    assert.is_nil(s)
    assert.equal("invalid_hex", code)
    assert.matches("odd length", msg)
  end)
  it("rejects a non-hex character and says where", function()
    local s, msg, code = core.hex_decode("00zz")
    assert.is_nil(s)
    assert.equal("invalid_hex", code)
    assert.matches("position 3", msg)
  end)
  it("rejects a NUL byte inside the input", function()
    local s, _, code = core.hex_decode("00\0" .. "0")
    assert.is_nil(s)
    assert.equal("invalid_hex", code)
  end)
  it("rejects whitespace", function()
    assert.equal("invalid_hex", select(3, core.hex_decode("00 11")))
  end)
end)

describe("core.b64_encode / core.b64_decode", function()
  local rfc4648 = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
    { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
  }
  for _, v in ipairs(rfc4648) do
    it(("encodes %q as the RFC 4648 base64 vector"):format(v[1]), function()
      assert.equal(v[2], core.b64_encode(v[1]))
    end)
    it(("decodes the RFC 4648 base64 vector %q"):format(v[2]), function()
      assert.equal(v[1], core.b64_decode(v[2]))
    end)
  end

  it("uses + and / in the standard alphabet", function()
    assert.equal("+/+/", core.b64_encode("\251\255\191"))
  end)
  it("uses - and _ without padding in the URL-safe alphabet", function()
    assert.equal("-_-_", core.b64_encode("\251\255\191", true))
    assert.equal("Zg", core.b64_encode("f", true))
    assert.equal("Zm8", core.b64_encode("fo", true))
  end)
  it("round-trips binary data through the URL-safe alphabet", function()
    local all = string.rep(bytes(0, 255), 20) .. "\0\1"
    local enc = core.b64_encode(all, true)
    assert.is_nil(enc:find("[+/=]"))
    assert.equal(all, core.b64_decode(enc, true))
  end)
  it("round-trips every length from 0 to 40 in both alphabets", function()
    for n = 0, 40 do
      local s = bytes(200, 200 + n - 1)
      assert.equal(s, core.b64_decode(core.b64_encode(s)))
      assert.equal(s, core.b64_decode(core.b64_encode(s, true), true))
    end
  end)
  it("round-trips data longer than one Lua buffer", function()
    local big = string.rep(bytes(0, 255), 300)
    assert.equal(big, core.b64_decode(core.b64_encode(big)))
  end)
  it("accepts padded input in URL-safe mode", function()
    assert.equal("f", core.b64_decode("Zg==", true))
    assert.equal("fo", core.b64_decode("Zm8=", true))
  end)
  it("rejects unpadded input in standard mode", function()
    local s, msg, code = core.b64_decode("Zg")
    assert.is_nil(s)
    assert.equal("invalid_base64", code)
    assert.matches("multiple of 4", msg)
  end)
  it("rejects URL-safe characters in standard mode", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("-_-_")))
  end)
  it("rejects standard characters in URL-safe mode", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("+/+/", true)))
  end)
  it("rejects characters outside the alphabet and says where", function()
    local s, msg, code = core.b64_decode("Zm9v!mFy")
    assert.is_nil(s)
    assert.equal("invalid_base64", code)
    assert.matches("position 5", msg)
  end)
  it("rejects padding in the middle", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("Zg==Zm9v")))
  end)
  it("rejects three padding characters", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("Z===")))
  end)
  it("rejects a single dangling character", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("Zm9vY", true)))
  end)
  it("rejects non-zero unused bits in the last character", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("Zh==")))
  end)
  it("rejects whitespace and NUL bytes", function()
    assert.equal("invalid_base64", select(3, core.b64_decode("Zm9v\nYmFy")))
    assert.equal("invalid_base64", select(3, core.b64_decode("Zm9v\0mFy")))
  end)
end)

describe("core.consteq", function()
  it("is true for equal strings", function()
    assert.is_true(core.consteq("signature", "signature"))
  end)
  it("is true for two empty strings", function()
    assert.is_true(core.consteq("", ""))
  end)
  it("is false when one byte differs", function()
    assert.is_false(core.consteq("signature", "signaturf"))
  end)
  it("is false for different lengths", function()
    assert.is_false(core.consteq("abc", "abcd"))
    assert.is_false(core.consteq("", "a"))
  end)
  it("compares bytes after a NUL", function()
    assert.is_false(core.consteq("a\0b", "a\0c"))
    assert.is_true(core.consteq("a\0b", "a\0b"))
  end)
  it("raises when an argument is not a string", function()
    assert.has_error(function() core.consteq("a", nil) end)
  end)
end)

describe("core.random_bytes / core.random_hex", function()
  it("returns exactly n bytes", function()
    for _, n in ipairs({ 0, 1, 16, 32, 1000, 20000 }) do
      assert.equal(n, #core.random_bytes(n))
    end
  end)
  it("returns 2 * n lowercase hex digits", function()
    for _, n in ipairs({ 0, 1, 16, 300 }) do
      local h = core.random_hex(n)
      assert.equal(2 * n, #h)
      assert.is_nil(h:find("[^0-9a-f]"))
    end
  end)
  it("never repeats a 16-byte value in 1000 draws", function()
    local seen = {}
    for _ = 1, 1000 do
      local r = core.random_bytes(16)
      assert.is_nil(seen[r])
      seen[r] = true
    end
  end)
  it("uses all byte values over a large draw", function()
    local r, seen, distinct = core.random_bytes(65536), {}, 0
    for i = 1, #r do
      local b = r:byte(i)
      if not seen[b] then seen[b] = true; distinct = distinct + 1 end
    end
    assert.equal(256, distinct)
  end)
  it("raises on a negative or fractional count", function()
    assert.has_error(function() core.random_bytes(-1) end)
    assert.has_error(function() core.random_bytes(1.5) end)
    assert.has_error(function() core.random_hex("x") end)
  end)
  it("raises on an excessive count", function()
    assert.has_error(function() core.random_bytes(2 ^ 40) end)
  end)
end)

describe("core.uuid4", function()
  local PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
  it("has the 8-4-4-4-12 lowercase layout with version 4 and the RFC 4122 variant", function()
    for _ = 1, 200 do
      local u = core.uuid4()
      assert.equal(36, #u)
      assert.matches(PATTERN, u)
      assert.is_nil(u:find("[A-F]"))
    end
  end)
  it("is unique across 1000 draws", function()
    local seen = {}
    for _ = 1, 1000 do
      local u = core.uuid4()
      assert.is_nil(seen[u])
      seen[u] = true
    end
  end)
end)

describe("core request signers", function()
  -- Zippy's worked example (spec/zippy_spec.lua): key kd94hf93k423kf44&, nonce abc, time 1700000000
  local function zippy_signer(key)
    return core.oauth_signer(key, 'OAuth realm="Zippy", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_nonce="',
      '", oauth_signature_method="HMAC-SHA1", oauth_timestamp="',
      '", oauth_token="notimplemented", oauth_version="1.0", oauth_signature="',
      core.pct_encode("oauth_consumer_key=dpf43f3p2l4k3l03&oauth_nonce="),
      core.pct_encode("&oauth_signature_method=HMAC-SHA1&oauth_timestamp="),
      core.pct_encode("&oauth_token=notimplemented&oauth_version=1.0"))
  end
  local EURI = core.pct_encode("http://127.0.0.1:2605/sellers")

  it("oauth_signer gives the worked example's signature, and another for a tampered key or input", function()
    local s = zippy_signer("kd94hf93k423kf44&")
    local h = s:header("GET", EURI, "abc", "1700000000")
    assert.are.equal('oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"', h:sub(-#'oauth_signature="467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D"'))
    assert.is_nil(zippy_signer("kd94hf93k423kf45&"):header("GET", EURI, "abc", "1700000000"):find("467mnp5J8iEZ", 1, true))
    assert.is_nil(s:header("GET", EURI, "abd", "1700000000"):find("467mnp5J8iEZ", 1, true))
    assert.is_nil(s:header("PUT", EURI, "abc", "1700000000"):find("467mnp5J8iEZ", 1, true))
  end)

  it("oauth_signer's MAC is HMAC-SHA1 for keys longer than a block too", function()
    for _, key in ipairs { "", "k", rep_byte(0x61, 64), rep_byte(0x62, 65), rep_byte(0x63, 300) } do
      local h = zippy_signer(key):header("post", EURI, "n/ce", "17")
      local base = "POST&" .. EURI .. "&" .. core.pct_encode("oauth_consumer_key=dpf43f3p2l4k3l03&oauth_nonce=n%2Fce"
        .. "&oauth_signature_method=HMAC-SHA1&oauth_timestamp=17&oauth_token=notimplemented&oauth_version=1.0")
      assert.truthy(h:find('oauth_nonce="n%2Fce"', 1, true))
      assert.truthy(h:find('oauth_signature="' .. core.pct_encode(core.hmac("sha1", key, base, "base64")) .. '"', 1, true))
    end
  end)

  it("oauth_signer signs right when calls repeat, alternate or nearly repeat a method and URI (its kept prefix state)", function()
    local key = "kd94hf93k423kf44&"
    local s = zippy_signer(key)
    local long = core.pct_encode("http://h:1/" .. ("p"):rep(600)) -- longer than the kept prefix
    local calls = {
      { "GET", EURI }, { "GET", EURI }, { "POST", EURI }, { "GET", EURI }, { "get", EURI }, { "GET", EURI .. "x" },
      { "GE", "T" .. EURI }, { "GET", EURI:sub(1, -2) }, { "GET", EURI:sub(1, -2) .. "t" }, { "GET", EURI },
      { "PUT", EURI }, { "GET", EURI }, { "GET", "X" .. EURI:sub(2) }, { "GET", long }, { "GET", long }, { "GET", EURI },
      { "GET", EURI }, { "PUT", long:sub(1, 470) }, { "PUT", long:sub(1, 470) }, { "PUT", long:sub(1, 471) },
    }
    for i, c in ipairs(calls) do
      local nonce, ts = "n" .. i, tostring(1700000000 + i)
      local base = c[1]:upper() .. "&" .. c[2] .. "&" .. core.pct_encode("oauth_consumer_key=dpf43f3p2l4k3l03&oauth_nonce="
        .. nonce .. "&oauth_signature_method=HMAC-SHA1&oauth_timestamp=" .. ts .. "&oauth_token=notimplemented&oauth_version=1.0")
      local h = s:header(c[1], c[2], nonce, ts)
      assert.truthy(h:find('oauth_signature="' .. core.pct_encode(core.hmac("sha1", key, base, "base64")) .. '"', 1, true), i)
    end
    -- the worked example after all those, and a tampered nonce or method right after it
    assert.truthy(s:header("GET", EURI, "abc", "1700000000"):find("467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D", 1, true))
    assert.truthy(s:header("GET", EURI, "abc", "1700000000"):find("467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D", 1, true))
    assert.is_nil(s:header("GET", EURI, "abd", "1700000000"):find("467mnp5J8iEZ", 1, true))
    assert.is_nil(s:header("PUT", EURI, "abc", "1700000000"):find("467mnp5J8iEZ", 1, true))
    assert.is_nil(s:header("GET", EURI .. "a", "abc", "1700000000"):find("467mnp5J8iEZ", 1, true))
    assert.truthy(s:header("GET", EURI, "abc", "1700000000"):find("467mnp5J8iEZ%2F5XGoc2Qz1jqA6s%3D", 1, true))
  end)

  it("mocopay_signer gives the published vector (md5) and the sha1 digest of the same string", function()
    local list = { { "mcc", "228" }, { "userId", "123456789" }, { "pid", "12000" }, { "mnc", "01" } }
    assert.are.equal("WETDyNQLx0+8BJ16vDgiVg==", core.mocopay_signer("md5", "this.is.a.secret"):sign("/v1/payment/initPayment/", list))
    assert.are.equal(core.digest("sha1", "this.is.a.secret/v1/payment/initPayment/?mcc=228&mnc=01&pid=12000&userId=123456789", "base64"),
      core.mocopay_signer("sha1", "this.is.a.secret"):sign("/v1/payment/initPayment/", list))
    assert.are.equal("k:" .. core.digest("md5", "s/v?sessionId=a b", "base64"), core.mocopay_signer("md5", "s"):verify("/v", "sessionId", "a b", "k:"))
    assert.has_error(function() core.mocopay_signer("sha256", "s") end)
  end)
end)
