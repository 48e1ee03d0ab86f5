-- The bad inputs of spec/badinput_zippy_spec.lua as data, shared with the run inside nginx
-- (spec/zippy_nginx_spec.lua): { label, method name, arguments (a list), field expected in
-- err.field }. Every one must be refused before anything reaches the network.
local core = require "paykit.core"
local sandbox = require "paykit.sandbox.zippy"

local UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
local BIG = ("x"):rep(10 * 1024 * 1024)

-- A valid purchase; `over` replaces fields (a field set to the value NIL is removed).
local NIL = {}
local function with(base, over)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(over or {}) do
    if v == NIL then t[k] = nil else t[k] = v end
  end
  return t
end

local PURCHASE = {
  product_id = UUID, amount = "0.99", currency = "EUR", pay_method = "CARD", carrier = "TMOBILE",
  region = 310, reference = "order-1", return_url = "https://shop.example/return",
  notify_url = "https://shop.example/notify",
}
local TX = {
  product_id = UUID, price = "0.99", currency = "EUR", pay_method = "OPERATOR", carrier = "TMOBILE",
  region = "310", ext_transaction_id = "order-1",
  success_url = "https://shop.example/s", error_url = "https://shop.example/e",
  callback_success_url = "https://shop.example/cs", callback_error_url = "https://shop.example/ce",
}
local SELLER = { uuid = "seller-1", status = "ACTIVE", name = "Shop", email = "shop@example.org" }
local PRODUCT = { uuid = UUID, name = "Sword", external_id = "sword-1", seller_id = "seller-1" }

local function p(over) return with(PURCHASE, over) end
local function tx(over) return with(TX, over) end
local function seller(over) return with(SELLER, over) end
local function product(over) return with(PRODUCT, over) end

-- { label, call name, args (a list), field expected in err.field }
local CASES = {
  -- purchase: product_id (issue 6 item 10: 5 and "not-a-uuid" reached the network)
  { "product_id as a number", "purchase", { p { product_id = 5 } }, "product_id" },
  { "product_id not a uuid", "purchase", { p { product_id = "not-a-uuid" } }, "product_id" },
  { "product_id empty", "purchase", { p { product_id = "" } }, "product_id" },
  { "product_id missing", "purchase", { p { product_id = NIL } }, "product_id" },
  { "product_id uuid and a newline", "purchase", { p { product_id = UUID .. "\n" } }, "product_id" },
  { "product_id uuid too long", "purchase", { p { product_id = UUID .. "0" } }, "product_id" },
  { "product_id uuid without dashes", "purchase", { p { product_id = (UUID:gsub("%-", "")) } }, "product_id" },
  { "product_id a table", "purchase", { p { product_id = {} } }, "product_id" },
  -- purchase: amount (zero and non-positive refused; exact decimals only)
  { "amount 0", "purchase", { p { amount = "0" } }, "amount" },
  { "amount 0.00", "purchase", { p { amount = "0.00" } }, "amount" },
  { "amount negative", "purchase", { p { amount = "-1.00" } }, "amount" },
  { "amount three decimals", "purchase", { p { amount = "0.999" } }, "amount" },
  { "amount exponent", "purchase", { p { amount = "1e2" } }, "amount" },
  { "amount words", "purchase", { p { amount = "ten" } }, "amount" },
  { "amount empty", "purchase", { p { amount = "" } }, "amount" },
  { "amount missing", "purchase", { p { amount = NIL } }, "amount" },
  { "amount a float", "purchase", { p { amount = 0.5 } }, "amount" },
  { "amount a boolean", "purchase", { p { amount = true } }, "amount" },
  { "amount with a space", "purchase", { p { amount = " 1.00" } }, "amount" },
  { "amount with a comma", "purchase", { p { amount = "1,00" } }, "amount" },
  { "amount in hex", "purchase", { p { amount = "0x10" } }, "amount" },
  { "amount and price both", "purchase", { p { price = "0.99" } }, "amount" },
  { "price 0 (purchase with price)", "purchase", { p { amount = NIL, price = "0" } }, "price" },
  -- purchase: currency, pay_method
  { "currency JPY", "purchase", { p { currency = "JPY" } }, "currency" },
  { "currency lowercase", "purchase", { p { currency = "eur" } }, "currency" },
  { "currency missing", "purchase", { p { currency = NIL } }, "currency" },
  { "currency numeric code", "purchase", { p { currency = 978 } }, "currency" },
  { "currency four letters", "purchase", { p { currency = "EURO" } }, "currency" },
  { "pay_method lowercase", "purchase", { p { pay_method = "card" } }, "pay_method" },
  { "pay_method missing", "purchase", { p { pay_method = NIL } }, "pay_method" },
  { "pay_method unknown", "purchase", { p { pay_method = "BITCOIN" } }, "pay_method" },
  -- purchase: carrier, region
  { "carrier empty", "purchase", { p { carrier = "" } }, "carrier" },
  { "carrier missing", "purchase", { p { carrier = NIL } }, "carrier" },
  { "carrier with a NUL byte", "purchase", { p { carrier = "T\0MOBILE" } }, "carrier" },
  { "carrier 300 bytes", "purchase", { p { carrier = ("A"):rep(300) } }, "carrier" },
  { "carrier a number", "purchase", { p { carrier = 12 } }, "carrier" },
  { "region missing", "purchase", { p { region = NIL } }, "region" },
  { "region letters", "purchase", { p { region = "EU" } }, "region" },
  { "region four digits", "purchase", { p { region = "3100" } }, "region" },
  { "region a fraction", "purchase", { p { region = 3.5 } }, "region" },
  { "region negative", "purchase", { p { region = "-310" } }, "region" },
  { "region a table", "purchase", { p { region = {} } }, "region" },
  { "region with a space", "purchase", { p { region = " 310" } }, "region" },
  -- purchase: reference (issue 6 item 10: 10 MB and NUL reached the network)
  { "reference of 10 MB", "purchase", { p { reference = BIG } }, "reference" },
  { "reference with a NUL byte", "purchase", { p { reference = "order\0x" } }, "reference" },
  { "reference with a newline", "purchase", { p { reference = "order\n1" } }, "reference" },
  { "reference with DEL", "purchase", { p { reference = "order\127" } }, "reference" },
  { "reference empty", "purchase", { p { reference = "" } }, "reference" },
  { "reference missing", "purchase", { p { reference = NIL } }, "reference" },
  { "reference 256 bytes", "purchase", { p { reference = ("r"):rep(256) } }, "reference" },
  { "reference not UTF-8", "purchase", { p { reference = "order-\255\254" } }, "reference" },
  { "reference a number", "purchase", { p { reference = 42 } }, "reference" },
  { "reference and ext_transaction_id both", "purchase", { p { ext_transaction_id = "order-2" } }, "reference" },
  -- purchase: URLs
  { "return_url relative", "purchase", { p { return_url = "/return" } }, "return_url" },
  { "return_url ftp", "purchase", { p { return_url = "ftp://shop.example/r" } }, "return_url" },
  { "return_url javascript", "purchase", { p { return_url = "javascript:alert(1)" } }, "return_url" },
  { "return_url with a fragment", "purchase", { p { return_url = "https://shop.example/r#top" } }, "return_url" },
  { "return_url with a space", "purchase", { p { return_url = "https://shop.example/r x" } }, "return_url" },
  { "return_url and success_url both", "purchase", { p { success_url = "https://shop.example/s" } }, "return_url" },
  { "notify_url without a host", "purchase", { p { notify_url = "http://" } }, "notify_url" },
  { "notify_url with user info", "purchase", { p { notify_url = "https://u:pw@shop.example/n" } }, "notify_url" },
  { "success_url with CRLF", "purchase", { p { return_url = NIL, success_url = "https://shop.example/s\r\nX: y",
      error_url = "https://shop.example/e" } }, "success_url" },
  { "error_url a number", "purchase", { p { return_url = NIL, success_url = "https://shop.example/s", error_url = 5 } }, "error_url" },
  { "callback_success_url bad port", "purchase", { p { notify_url = NIL, callback_success_url = "http://shop.example:99999/x",
      callback_error_url = "https://shop.example/ce" } }, "callback_success_url" },
  { "callback_error_url 3 KB", "purchase", { p { notify_url = NIL, callback_success_url = "https://shop.example/cs",
      callback_error_url = "https://shop.example/" .. ("a"):rep(3000) } }, "callback_error_url" },
  { "product_image_url relative", "purchase", { p { product_image_url = "image.png" } }, "product_image_url" },
  { "product_image_url data:", "purchase", { p { product_image_url = "data:image/png;base64,AAAA" } }, "product_image_url" },
  -- purchase: shape
  { "purchase unknown field", "purchase", { p { colour = "red" } }, "colour" },
  { "purchase numeric key", "purchase", { p { [1] = "x" } }, "1" },
  { "purchase not a table", "purchase", { "buy" }, "purchase" },
  { "purchase nil", "purchase", {}, "purchase" },

  -- create_transaction (Zippy's own field names)
  { "tx price 0.00", "create_transaction", { tx { price = "0.00" } }, "price" },
  { "tx price 0", "create_transaction", { tx { price = "0" } }, "price" },
  { "tx ext_transaction_id with NUL", "create_transaction", { tx { ext_transaction_id = "a\0b" } }, "ext_transaction_id" },
  { "tx ext_transaction_id 10 MB", "create_transaction", { tx { ext_transaction_id = BIG } }, "ext_transaction_id" },
  { "tx product_id 5", "create_transaction", { tx { product_id = 5 } }, "product_id" },
  { "tx amount is not a Zippy field", "create_transaction", { tx { amount = "1.00" } }, "amount" },
  { "tx success_url with a fragment", "create_transaction", { tx { success_url = "https://shop.example/s#x" } }, "success_url" },
  { "tx not a table", "create_transaction", { 7 }, "transaction" },

  -- create_seller
  { "seller not a table", "create_seller", { "s" }, "seller" },
  { "seller uuid missing", "create_seller", { seller { uuid = NIL } }, "uuid" },
  { "seller uuid empty", "create_seller", { seller { uuid = "" } }, "uuid" },
  { "seller uuid with NUL", "create_seller", { seller { uuid = "s\0" } }, "uuid" },
  { "seller uuid 300 bytes", "create_seller", { seller { uuid = ("s"):rep(300) } }, "uuid" },
  { "seller uuid with a slash", "create_seller", { seller { uuid = "a/b" } }, "uuid" },
  { "seller status unknown", "create_seller", { seller { status = "OPEN" } }, "status" },
  { "seller status lowercase", "create_seller", { seller { status = "active" } }, "status" },
  { "seller status missing", "create_seller", { seller { status = NIL } }, "status" },
  { "seller name missing", "create_seller", { seller { name = NIL } }, "name" },
  { "seller name empty", "create_seller", { seller { name = "" } }, "name" },
  { "seller name with ESC", "create_seller", { seller { name = "\27[31mShop" } }, "name" },
  { "seller name only spaces", "create_seller", { seller { name = "   " } }, "name" },
  { "seller email without @", "create_seller", { seller { email = "nope" } }, "email" },
  { "seller email without a dot", "create_seller", { seller { email = "a@b" } }, "email" },
  { "seller email with a space", "create_seller", { seller { email = "a b@example.org" } }, "email" },
  { "seller email 300 bytes", "create_seller", { seller { email = ("a"):rep(290) .. "@example.org" } }, "email" },
  { "seller email a number", "create_seller", { seller { email = 5 } }, "email" },
  { "seller agreement month 13", "create_seller", { seller { agreement = "2024-13-01" } }, "agreement" },
  { "seller agreement 30 February", "create_seller", { seller { agreement = "2024-02-30" } }, "agreement" },
  { "seller agreement not ISO", "create_seller", { seller { agreement = "01/02/2024" } }, "agreement" },
  { "seller unknown field", "create_seller", { seller { colour = "red" } }, "colour" },

  -- get_seller, delete_seller, get_terms
  { "get_seller empty", "get_seller", { "" }, "uuid" },
  { "get_seller nil", "get_seller", {}, "uuid" },
  { "get_seller a number", "get_seller", { 5 }, "uuid" },
  { "get_seller NUL", "get_seller", { "a\0b" }, "uuid" },
  { "get_seller 1000 bytes", "get_seller", { ("s"):rep(1000) }, "uuid" },
  { "delete_seller empty", "delete_seller", { "" }, "uuid" },
  { "delete_seller nil", "delete_seller", {}, "uuid" },
  { "delete_seller newline", "delete_seller", { "a\nb" }, "uuid" },
  { "get_terms empty", "get_terms", { "" }, "uuid" },
  { "get_terms a table", "get_terms", { {} }, "uuid" },
  { "get_terms NUL", "get_terms", { "s\0" }, "uuid" },

  -- update_seller (read, merge, write: refused before the read)
  { "update_seller uuid empty", "update_seller", { "", { name = "x" } }, "uuid" },
  { "update_seller changes nil", "update_seller", { "seller-1" }, "seller" },
  { "update_seller changes a string", "update_seller", { "seller-1", "name=x" }, "seller" },
  { "update_seller no change", "update_seller", { "seller-1", {} }, "seller" },
  { "update_seller body uuid differs", "update_seller", { "seller-1", { uuid = "seller-2" } }, "uuid" },
  { "update_seller status unknown", "update_seller", { "seller-1", { status = "GONE" } }, "status" },
  { "update_seller status empty", "update_seller", { "seller-1", { status = "" } }, "status" },
  { "update_seller email bad", "update_seller", { "seller-1", { email = "x" } }, "email" },
  { "update_seller unknown field", "update_seller", { "seller-1", { colour = "red" } }, "colour" },
  { "update_seller name empty", "update_seller", { "seller-1", { name = "" } }, "name" },
  { "update_seller name NUL", "update_seller", { "seller-1", { name = "a\0" } }, "name" },

  -- create_product, get_product, list_products
  { "product not a table", "create_product", { true }, "product" },
  { "product uuid not a uuid", "create_product", { product { uuid = "not-a-uuid" } }, "uuid" },
  { "product uuid a number", "create_product", { product { uuid = 5 } }, "uuid" },
  { "product uuid missing", "create_product", { product { uuid = NIL } }, "uuid" },
  { "product name missing", "create_product", { product { name = NIL } }, "name" },
  { "product name NUL", "create_product", { product { name = "Sw\0rd" } }, "name" },
  { "product external_id empty", "create_product", { product { external_id = "" } }, "external_id" },
  { "product external_id 10 MB", "create_product", { product { external_id = BIG } }, "external_id" },
  { "product seller_id missing", "create_product", { product { seller_id = NIL } }, "seller_id" },
  { "product seller_id CR", "create_product", { product { seller_id = "a\rb" } }, "seller_id" },
  { "product unknown field", "create_product", { product { price = "1.00" } }, "price" },
  { "get_product not a uuid", "get_product", { "not-a-uuid" }, "uuid" },
  { "get_product empty", "get_product", { "" }, "uuid" },
  { "get_product a number", "get_product", { 5 }, "uuid" },
  { "list_products filter a string", "list_products", { "seller-1" }, "filter" },
  { "list_products seller_id empty", "list_products", { { seller_id = "" } }, "seller_id" },
  { "list_products external_id a number", "list_products", { { external_id = 5 } }, "external_id" },
  { "list_products unknown filter", "list_products", { { colour = "red" } }, "colour" },
  { "list_products seller_id NUL", "list_products", { { seller_id = "a\0" } }, "seller_id" },

  -- check_notice
  { "check_notice empty", "check_notice", { "" }, "qs" },
  { "check_notice nil", "check_notice", {}, "qs" },
  { "check_notice 10 MB", "check_notice", { BIG }, "qs" },
  { "check_notice NUL", "check_notice", { "ext_transaction_id=a\0&sig=1:00" }, "qs" },
}

-- notification and complete never use the network; their refusals must name the field too.
local KEEP = { ext_transaction_id = "order-1", uuid = UUID, token = ("ab"):rep(64), amount = "0.99", currency = "EUR" }
local GOOD_NOTICE = sandbox.sign_notice { { "ext_transaction_id", "order-1" } }
local SIG = GOOD_NOTICE:match("&sig=1:(%x+)$")
local function body(n) return "signed_notice=" .. core.pct_encode(n) end
local NOTICE_CASES = {
  -- ISSUE9 item 3: a raw string is the callback's body (it was refused as "not a table");
  -- a value that is neither a string nor a table is still refused as req
  { "notification not a table", "notification", { 7 }, "req" },
  { "notification a raw body, unsigned", "notification", { "signed_notice=x" }, "signed_notice" },
  { "notification decoded parameters, unsigned", "notification", { { signed_notice = "ext_transaction_id=order-1" } }, "signed_notice" },
  { "notification decoded parameters without signed_notice", "notification", { { notice = "x" } }, "signed_notice" },
  { "notification without a body", "notification", { { method = "POST" } }, "body" },
  { "notification body a number", "notification", { { method = "POST", body = 5 } }, "body" },
  { "notification empty signed_notice", "notification", { { method = "POST", body = "signed_notice=" } }, "signed_notice" },
  { "notification two signed_notice", "notification", { { method = "POST", body = body(GOOD_NOTICE) .. "&" .. body(GOOD_NOTICE) } }, "signed_notice" },
  { "notification no signed_notice field", "notification", { { method = "POST", body = "notice=" .. core.pct_encode(GOOD_NOTICE) } }, "signed_notice" },
  { "notification body of 10 MB", "notification", { { method = "POST", body = "signed_notice=" .. BIG } }, "body" },
  { "notification unsigned", "notification", { { method = "POST", body = body("ext_transaction_id=order-1") } }, "signed_notice" },
  { "notification truncated sig", "notification",
    { { method = "POST", body = body("ext_transaction_id=order-1&sig=1:" .. SIG:sub(1, 40)) } }, "signed_notice" },
  { "notification unknown key", "notification", { { method = "POST", body = body("ext_transaction_id=order-1&sig=7:" .. SIG) } }, "signed_notice" },
  { "notification NUL in notice", "notification", { { method = "POST", body = body("ext_transaction_id=order-1\0&sig=1:" .. SIG) } }, "signed_notice" },
  { "complete nil", "complete", {}, "query" },
  { "complete decoded table", "complete", { { ext_transaction_id = "order-1" }, KEEP }, "query" },
  { "complete empty query", "complete", { "", KEEP }, "query" },
  { "complete without keep", "complete", { GOOD_NOTICE }, "keep" },
  { "complete keep a string", "complete", { GOOD_NOTICE, "order-1" }, "keep" },
  { "complete keep without ext_transaction_id", "complete", { GOOD_NOTICE, { uuid = UUID } }, "keep" },
  { "complete query of 10 MB", "complete", { BIG, KEEP }, "query" },
  { "complete query with NUL", "complete", { "ext_transaction_id=order-1\0&sig=1:" .. SIG, KEEP }, "query" },
  { "complete unsigned", "complete", { "ext_transaction_id=order-1", KEEP }, "query" },
}

-- Runs every case on client z; `reached()` answers how many requests left so far (the
-- transport hook's count). Returns the number refused properly and the failures' descriptions.
local unpack = table.unpack or unpack
local function check(z, list, reached)
  local refused, seen, failures = 0, {}, {}
  for _, case in ipairs(list) do
    local label, call, args, field = case[1], case[2], case[3], case[4]
    if seen[label] then error("duplicate label " .. label) end
    seen[label] = true
    local before = reached()
    local ok, res, err = pcall(z[call], z, unpack(args, 1, #args))
    local why
    if not ok then why = "raised " .. tostring(res)
    elseif res ~= nil then why = "was accepted"
    elseif type(err) ~= "table" then why = "no error table"
    elseif err.kind ~= "validation" and err.kind ~= "signature" then why = "kind " .. tostring(err.kind)
    elseif err.field ~= field then why = "field " .. tostring(err.field) .. " instead of " .. field .. " (" .. tostring(err) .. ")"
    elseif #tostring(err) > 2000 then why = "the error echoes the input"
    end
    if reached() ~= before then why = (why and why .. "; " or "") .. "reached the transport" end
    if why then failures[#failures + 1] = label .. ": " .. why else refused = refused + 1 end
  end
  return refused, failures
end

return { API = CASES, NOTICES = NOTICE_CASES, PURCHASE = PURCHASE, TX = TX, UUID = UUID, with = with,
         check = check }
