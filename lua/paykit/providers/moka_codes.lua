--- Moka result codes and bank codes -> stable paykit codes and English messages.
-- Source: the ResultCode table of Moka's 3D Secure page and its bank error table
-- (000..029; 030 is seen in the field without a published meaning).
--
-- The tables `RESULT`, `SUFFIX` and `BANK` hold the rows.
-- @module paykit.providers.moka_codes
local _M = {}

-- Outer ResultCode (Moka itself refused the request). kind "config" when the fault is
-- the merchant's credentials or account set-up, "provider" otherwise.
_M.RESULT = {
  ["PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest"] = { "config", "moka.invalid_auth_request",
      "Moka refused the request at its authentication check (InvalidRequest: a bad CheckKey, or a malformed request object or JSON); these " ..
      "credentials have not been accepted by Moka on this instance yet, so check dealer_code, username and password first" },
  ["PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount"] = { "config", "moka.invalid_account",
      "Moka has no dealer with these credentials (check dealer_code, username and password)" },
  ["PaymentDealer.CheckPaymentDealerAuthentication.VirtualPosNotFound"] = { "config", "moka.virtual_pos_not_found",
      "no virtual POS is defined for this dealer: ask Moka to set one up" },
  ["PaymentDealer.CheckDealerPaymentLimits.DailyDealerLimitExceeded"] = { "provider", "moka.daily_dealer_limit_exceeded",
      "a daily limit of this dealer has been exceeded" },
  ["PaymentDealer.CheckDealerPaymentLimits.DailyCardLimitExceeded"] = { "provider", "moka.daily_card_limit_exceeded",
      "no more transactions can be made with this card today" },
  ["PaymentDealer.CheckCardInfo.InvalidCardInfo"] = { "provider", "moka.invalid_card_info", "the card information is invalid" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidRequest"] = { "provider", "moka.invalid_request",
      "Moka could not read the payment request (malformed JSON object)" },
  ["PaymentDealer.DoDirectPayment3dRequest.RedirectUrlRequired"] = { "provider", "moka.redirect_url_required", "a RedirectUrl for the 3D result is required" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidCurrencyCode"] = { "provider", "moka.invalid_currency", "the currency is invalid (use TL, USD, EUR or GBP)" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidInstallmentNumber"] = { "provider", "moka.invalid_installment_number",
      "the installment number must be between 1 and 12" },
  ["PaymentDealer.DoDirectPayment3dRequest.InstallmentNotAvailableForForeignCurrencyTransaction"] =
      { "provider", "moka.installment_not_available_for_foreign_currency",
      "installments are not possible in a foreign currency" },
  ["PaymentDealer.DoDirectPayment3dRequest.ForeignCurrencyNotAvailableForThisDealer"] = { "config", "moka.foreign_currency_not_available",
      "this dealer may not take payments in a foreign currency" },
  ["PaymentDealer.DoDirectPayment3dRequest.PaymentMustBeAuthorization"] = { "config", "moka.payment_must_be_pre_auth",
      "this dealer must send payments as pre-authorisations (pre_auth = true)" },
  ["PaymentDealer.DoDirectPayment3dRequest.AuthorizationForbiddenForThisDealer"] = { "config", "moka.pre_auth_forbidden",
      "this dealer may not send pre-authorisations" },
  ["PaymentDealer.DoDirectPayment3dRequest.PoolPaymentNotAvailableForDealer"] = { "config", "moka.pool_payment_not_available",
      "this dealer may not send pool payments" },
  ["PaymentDealer.DoDirectPayment3dRequest.PoolPaymentRequiredForDealer"] = { "config", "moka.pool_payment_required",
      "this dealer may only send pool payments (pool = true)" },
  ["PaymentDealer.DoDirectPayment3dRequest.TokenizationNotAvailableForDealer"] = { "config", "moka.tokenization_not_available",
      "this dealer may not store cards" },
  ["PaymentDealer.DoDirectPayment3dRequest.CardTokenCannotUseWithSaveCard"] = { "provider", "moka.card_token_with_save_card",
      "a card token cannot be used when the card is to be stored" },
  ["PaymentDealer.DoDirectPayment3dRequest.CardTokenNotFound"] = { "provider", "moka.card_token_not_found", "the card token was not found" },
  ["PaymentDealer.DoDirectPayment3dRequest.OnlyCardTokenOrCardNumber"] = { "provider", "moka.only_card_token_or_card_number",
      "send either the card number or the card token, not both" },
  ["PaymentDealer.DoDirectPayment3dRequest.ChannelPermissionNotAvailable"] = { "config", "moka.channel_not_permitted",
      "this dealer may not send payments through this channel" },
  ["PaymentDealer.DoDirectPayment3dRequest.IpAddressNotAllowed"] = { "config", "moka.ip_not_allowed",
      "this dealer may only send payments from its registered IP addresses" },
  ["PaymentDealer.DoDirectPayment3dRequest.VirtualPosNotAvailable"] = { "provider", "moka.virtual_pos_not_available",
      "no suitable virtual POS was found for this card" },
  ["PaymentDealer.DoDirectPayment3dRequest.ThisInstallmentNumberNotAvailableForVirtualPos"] = { "provider", "moka.installment_not_available_for_virtual_pos",
      "the virtual POS does not allow this number of installments" },
  ["PaymentDealer.DoDirectPayment3dRequest.ThisInstallmentNumberNotAvailableForDealer"] = { "provider", "moka.installment_not_available_for_dealer",
      "this number of installments is not available for this dealer" },
  ["PaymentDealer.DoDirectPayment3dRequest.DealerCommissionRateNotFound"] = { "config", "moka.dealer_commission_rate_not_found",
      "no commission rate is defined for this dealer and installment number" },
  ["PaymentDealer.DoDirectPayment3dRequest.DealerGroupCommissionRateNotFound"] = { "config", "moka.dealer_group_commission_rate_not_found",
      "no commission rate is defined for the parent dealer for this virtual POS and installment number" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidSubMerchantName"] = { "provider", "moka.invalid_sub_merchant_name",
      "the sub-merchant name has not been registered with Moka" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidUnitPrice"] = { "provider", "moka.invalid_unit_price", "a basket product has an invalid unit price" },
  ["PaymentDealer.DoDirectPayment3dRequest.InvalidQuantityValue"] = { "provider", "moka.invalid_quantity", "a basket product has an invalid quantity" },
  ["PaymentDealer.DoDirectPayment3dRequest.BasketAmountIsNotEqualPaymentAmount"] = { "provider", "moka.basket_amount_mismatch",
      "the basket total does not equal the payment amount" },
  ["PaymentDealer.DoDirectPayment3dRequest.BasketProductNotFoundInYourProductList"] = { "provider", "moka.basket_product_not_found",
      "a basket product is not in the dealer's product list" },
  ["PaymentDealer.DoDirectPayment3dRequest.MustBeOneOfDealerProductIdOrProductCode"] = { "provider", "moka.basket_product_id_or_code_required",
      "each basket product needs a product id or a product code" },
  ["PaymentDealer.Fraud.SuspiciousPaymentTrial"] = { "provider", "moka.suspicious_payment_trial",
      "Moka flagged rapid repeated trials as suspicious: wait before trying again" },
  ["EX"] = { "provider", "moka.unexpected_error", "Moka reported an unexpected error" },
}

-- The last segment of a code, for the other endpoints' variants of the same failures
-- (e.g. PaymentDealer.DoDirectPaymentRequest.InvalidCurrencyCode).
_M.SUFFIX = {}
for full, row in pairs(_M.RESULT) do
  local last = full:match("([^%.]+)$")
  if full ~= "EX" and last ~= "InvalidRequest" then _M.SUFFIX[last] = row end
end
_M.SUFFIX.InvalidRequest = { "provider", "moka.invalid_request", "Moka could not read the request (malformed JSON object)" }
_M.SUFFIX.PaymentNotFound = { "provider", "moka.payment_not_found", "Moka found no payment with this reference" }
-- after-sale, query and stored-card failures (the endpoint name varies, the last segment does not)
for last, row in pairs {
  PaymentIsNotPreAuth = { "provider", "moka.payment_not_pre_auth", "the payment is not a pre-authorisation, so it cannot be captured" },
  InvalidAmount = { "provider", "moka.invalid_amount", "the amount is invalid for this payment (above what remains?)" },
  PaymentAlreadyCancelled = { "provider", "moka.payment_already_cancelled", "the payment has already been cancelled" },
  PaymentCannotBeVoided = { "provider", "moka.payment_cannot_be_voided", "the payment cannot be voided (not paid or pre-authorised, or refunded)" },
  VoidOnlyAllowedSameDay = { "provider", "moka.void_only_same_day", "a payment can only be voided on the day it was made: refund it instead" },
  PaymentCannotBeRefunded = { "provider", "moka.payment_cannot_be_refunded", "the payment cannot be refunded (not paid)" },
  PaymentAlreadyRefunded = { "provider", "moka.payment_already_refunded", "the payment has already been fully refunded" },
  RefundAmountExceedsRemainingAmount = { "provider", "moka.refund_exceeds_remaining", "the refund amount exceeds what remains of the payment" },
  PaymentIsNotPoolPayment = { "provider", "moka.not_pool_payment", "the payment is not a pool payment" },
  PaymentIsNotPaid = { "provider", "moka.payment_not_paid", "the payment is not paid" },
  PoolPaymentAlreadyApproved = { "provider", "moka.pool_already_approved", "the pool payment has already been approved" },
  PoolPaymentNotApproved = { "provider", "moka.pool_not_approved", "the pool payment has not been approved" },
  BinNumberNotFound = { "provider", "moka.bin_not_found", "Moka does not know this BIN" },
  CustomerNotFound = { "provider", "moka.customer_not_found", "no stored customer with this id or code" },
  CustomerCodeAlreadyExists = { "provider", "moka.customer_code_exists", "a customer with this customer_code already exists" },
} do _M.SUFFIX[last] = row end
_M.RESULT["DealerCustomer.CheckDealerCustomerAuthentication.InvalidRequest"] = _M.RESULT["PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest"]
_M.RESULT["DealerCustomer.CheckDealerCustomerAuthentication.InvalidAccount"] = _M.RESULT["PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount"]
_M.RESULT["DealerCustomer.CheckCardInfo.InvalidCardInfo"] = _M.RESULT["PaymentDealer.CheckCardInfo.InvalidCardInfo"]

-- Bank codes (resultCode of a 3D return, Data.ResultCode of a direct payment).
_M.BANK = {
  ["000"] = { "moka.bank.general_error", "General error" },
  ["001"] = { "moka.bank.cardholder_confirmation_failed", "Cardholder confirmation failed" },
  ["002"] = { "moka.bank.insufficient_limit", "Insufficient limit" },
  ["003"] = { "moka.bank.invalid_card_number_format", "Credit card number not in a valid format" },
  ["004"] = { "moka.bank.general_decline", "General decline" },
  ["005"] = { "moka.bank.transaction_not_open_to_cardholder", "Transaction not open to the cardholder" },
  ["006"] = { "moka.bank.invalid_expiry", "Card expiry date incorrect" },
  ["007"] = { "moka.bank.invalid_transaction", "Invalid transaction" },
  ["008"] = { "moka.bank.bank_unreachable", "Unable to connect to the bank" },
  ["009"] = { "moka.bank.undefined_error", "Undefined error code" },
  ["010"] = { "moka.bank.bank_ssl_error", "Bank SSL error" },
  ["011"] = { "moka.bank.call_bank_for_approval", "Call the bank for manual approval" },
  ["012"] = { "moka.bank.invalid_card_or_cvv", "Card information incorrect: card number or CVV2" },
  ["013"] = { "moka.bank.three_d_not_supported", "Cards other than Visa and Mastercard do not support 3D Secure" },
  ["014"] = { "moka.bank.invalid_account_number", "Invalid account number" },
  ["015"] = { "moka.bank.invalid_cvv", "Invalid CVV" },
  ["016"] = { "moka.bank.no_approval_mechanism", "No approval mechanism available" },
  ["017"] = { "moka.bank.system_failure", "System failure" },
  ["018"] = { "moka.bank.stolen_card", "Stolen card" },
  ["019"] = { "moka.bank.lost_card", "Lost card" },
  ["020"] = { "moka.bank.restricted_card", "Restricted card" },
  ["021"] = { "moka.bank.timeout", "Time out" },
  ["022"] = { "moka.bank.invalid_merchant", "Invalid workplace (merchant)" },
  ["023"] = { "moka.bank.fake_confirmation", "Fake confirmation" },
  ["024"] = { "moka.bank.three_d_ok_capture_failed", "3D approval received but the money could not be taken from the card" },
  ["025"] = { "moka.bank.three_d_confirmation_error", "3D confirmation error" },
  ["026"] = { "moka.bank.not_three_d_member", "The card holder is not a 3D Secure member, or the bank is not" },
  ["027"] = { "moka.bank.user_not_authorized", "The user is not authorized to take this action" },
  ["028"] = { "moka.bank.fraud_suspected", "Fraud probability" },
  ["029"] = { "moka.bank.ecommerce_closed", "The card is closed to e-commerce transactions" },
  ["030"] = { "moka.bank.other_decline", "The bank declined the payment (code 030)" },
}

--- What CheckPaymentDealerAuthentication.InvalidRequest means once the same credentials have
-- been accepted (a Success answer) on the instance: the request, not the credentials.
-- Moka gives one code for both; paykit tells them apart by what it has seen.
-- @treturn string kind "provider"
-- @treturn string code "moka.invalid_request"
-- @treturn string message
function _M.invalid_request_after_auth()
  return "provider", "moka.invalid_request",
    "Moka refused this request as malformed (CheckPaymentDealerAuthentication.InvalidRequest) although it " ..
    "accepted these credentials before: the request object is the likely fault (or the credentials were changed since)"
end

--- Outer ResultCode -> kind, code, message (unknown codes map to moka.unknown_result).
-- @tparam ?string code Moka's ResultCode, e.g. "PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount"
-- @treturn string kind ("config" or "provider")
-- @treturn string code, e.g. "moka.invalid_account"
-- @treturn string message
function _M.result(code)
  code = (code or ""):match("^%s*(.-)%s*$")
  local row = _M.RESULT[code] or _M.SUFFIX[code:match("([^%.]+)$") or ""]
  if row then return row[1], row[2], row[3] end
  return "provider", "moka.unknown_result", "Moka refused the request with result code " .. code
end

--- Bank code -> code, message.
-- @tparam ?string code the bank's result code, e.g. "005"
-- @treturn string code, e.g. "moka.bank.transaction_not_open_to_cardholder" ("moka.bank.unknown" when unknown)
-- @treturn string message
function _M.bank(code)
  code = tostring(code or ""):match("^%s*(.-)%s*$")
  local row = _M.BANK[code]
  if row then return row[1], row[2] end
  if code == "" then return "moka.bank.declined", "The payment was declined" end
  return "moka.bank.unknown", "The bank declined the payment with code " .. code
end

return _M
