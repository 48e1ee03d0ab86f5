-- "consteq(a, b) -> boolean; time depends only on the lengths" (docs/architecture.md, crypto)
-- and README's "compared in constant time (core.consteq)". A spec never asserts timing, so
-- the attack is on what decides the time: the C function must compare through OpenSSL's
-- CRYPTO_memcmp (which reads every byte whatever it finds) over the whole common length, and
-- never through memcmp, strcmp, a loop that can stop at the first difference or a return
-- before the comparison. And its answers must depend on content and length only: a
-- difference at any position, NUL bytes included, makes it false.
local luasrc = require "spec.support.luasrc"
local core = require "paykit.core"

-- The body of the C function `name` in src (from its opening brace to the matching one).
local function c_function(src, name)
  local s = src:find("static int " .. name .. "%s*%(")
  assert(s, name .. " not found in csrc/crypto.c")
  local open = assert(src:find("{", s, true))
  local depth, i = 0, open
  while i <= #src do
    local c = src:sub(i, i)
    if c == "{" then depth = depth + 1 elseif c == "}" then
      depth = depth - 1
      if depth == 0 then return src:sub(open, i) end
    end
    i = i + 1
  end
  error("unbalanced " .. name)
end

-- The function's code without comments.
local function code_of(body) return (body:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")) end

describe("core.consteq itself", function()
  it("compares with CRYPTO_memcmp over the whole length, never memcmp or an early exit", function()
    local src = luasrc.read("csrc/crypto.c")
    -- the function registered as consteq
    local cname = assert(src:match('{%s*"consteq"%s*,%s*([%w_]+)%s*}'), "consteq is not registered")
    local body = code_of(c_function(src, cname))
    assert.matches("CRYPTO_memcmp%s*%(", body, nil, false, "consteq must compare through CRYPTO_memcmp")
    for _, banned in ipairs { "%f[%w_]memcmp%s*%(", "strcmp", "strncmp", "%f[%w_]for%s*%(", "%f[%w_]while%s*%(",
                               "%f[%w_]break%f[^%w_]", "%f[%w_]goto%f[^%w_]" } do
      assert.is_nil(body:find(banned), "consteq's body has " .. banned .. ":\n" .. body)
    end
    -- one return, after the comparison (a length check may only pick the answer, not skip it)
    local _, returns = body:gsub("%f[%w_]return%f[^%w_]", "")
    assert.equal(1, returns, "consteq returns once:\n" .. body)
    -- the length compared is the common one the lengths agreed on
    assert.matches("CRYPTO_memcmp%s*%(%s*[%w_]+%s*,%s*[%w_]+%s*,%s*[%w_]+%s*%)", body)
  end)

  it("answers by content and length only", function()
    local a = ("0123456789abcdef"):rep(4) .. "\0tail"
    assert.is_true(core.consteq(a, a .. ""))
    for i = 1, #a do
      local b = a:sub(1, i - 1) .. string.char((a:byte(i) + 1) % 256) .. a:sub(i + 1)
      assert.is_false(core.consteq(a, b), "a difference at byte " .. i)
      assert.is_false(core.consteq(b, a), "a difference at byte " .. i .. " (swapped)")
    end
    assert.is_false(core.consteq(a, a:sub(1, -2)))
    assert.is_false(core.consteq(a .. "\0", a), "a trailing NUL is a difference")
    assert.is_false(core.consteq("", "\0"))
    assert.is_true(core.consteq("", ""))
  end)
end)
