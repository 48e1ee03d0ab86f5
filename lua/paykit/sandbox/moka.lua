-- The Moka simulator of the local sandbox (runs inside the sandbox nginx, LuaJIT).
-- Wire contract: ../shared/specs/moka-3d-secure.txt and moka-notes.md. Everything below is the
-- sandbox's own contract, also exported as M.credentials, M.cards, M.bank_errors, M.codes.
--
-- BASE URL   http://127.0.0.1:PORT/moka   (every API call: POST, JSON body, path as Moka's)
--
-- DEALERS (CheckKey = lower hex sha256(DealerCode.."MK"..Username.."PD"..Password))
--   "1730" / "sandbox"    / "sandbox-pass"     all features: foreign currency, pool, pre-auth, tokenization
--   "1731" / "restricted" / "restricted-pass"  none of them (triggers the dealer-permission codes)
--   unknown DealerCode -> PaymentDealer.CheckPaymentDealerAuthentication.InvalidAccount
--   bad CheckKey, wrong Username/Password, missing auth block or unparsable JSON
--                      -> PaymentDealer.CheckPaymentDealerAuthentication.InvalidRequest
--   (/DealerCustomer/* answers DealerCustomer.CheckDealerCustomerAuthentication.InvalidAccount|InvalidRequest)
--
-- TEST CARDS (any future expiry, any 3-4 digit CVC)
--   4111111111111111, 5555666677778884  approve (3D page: buyer approves, declines or picks a bank error)
--   "40000000001"..CCC.."0"..luhn digit  decline with bank code CCC (000..030), e.g. 4000000000100505 -> 005
--       direct: outer Success + Data.IsSuccessful=false, Data.ResultCode=CCC; 3D: "approve" fails with CCC
--   4000000000200008                    slow: DoDirectPayment / DoDirectPaymentThreeD answer after 3 s
--   4000000000300006                    HTTP 500 with an HTML body (nothing recorded)
--   any other Luhn-valid card approves; non-Luhn, bad/expired ExpMonth/ExpYear (MM, YYYY or YY), bad CVC
--       -> PaymentDealer.CheckCardInfo.InvalidCardInfo
--
-- PAYMENTS   DoDirectPaymentThreeD (3D) and DoDirectPayment (non-3D) share their checks; error codes are
--   PaymentDealer.DoDirectPayment3dRequest.<X> for 3D and PaymentDealer.DoDirectPayment.<X> for non-3D, X one of:
--   InvalidRequest (PaymentDealerRequest missing, Amount missing/<=0/not a 2-decimal number, Software > 30 or
--   Description > 200 chars), RedirectUrlRequired (3D only), InvalidCurrencyCode (only ""/TL/USD/EUR/GBP; "TRY"
--   is refused), InvalidInstallmentNumber (not 0..12), InstallmentNotAvailableForForeignCurrencyTransaction,
--   ForeignCurrencyNotAvailableForThisDealer, AuthorizationForbiddenForThisDealer (IsPreAuth=1),
--   PoolPaymentNotAvailableForDealer (IsPoolPayment=1), TokenizationNotAvailableForDealer (IsTokenized=1 or a
--   CardToken), CardTokenCannotUseWithSaveCard, CardTokenNotFound, OnlyCardTokenOrCardNumber,
--   ThisInstallmentNumberNotAvailableForVirtualPos (TROY BINs allow at most 9, AMEX at most 6),
--   BasketProduct[] {ProductId|ProductCode, UnitPrice, Quantity}: MustBeOneOfDealerProductIdOrProductCode,
--   InvalidUnitPrice, InvalidQuantityValue, BasketAmountIsNotEqualPaymentAmount (sum UnitPrice*Quantity ~= Amount).
--   Checks run in that order: auth, request shape, card, amount, redirect, currency, installments, permissions,
--   basket. Amounts are read exactly from the JSON text (numbers or decimal strings); replies write bare numbers.
--   OtherTrxCode is not required to be unique: look-ups by OtherTrxCode find the newest payment.
--   3D: Data = {Url, CodeForHash} with ReturnHash 1, else Data = Url (a string).
--     Url = BASE/PaymentDealerThreeDProcess?threeDTrxCode=<guid>; the page has buttons id="approve",
--     id="decline", <select id="bank-error" name="code"> (000..030) and id="fail"; it POSTs back to the same
--     path and the browser is sent to RedirectUrl with a self-submitting POST form:
--     hashValue, resultCode, resultMessage, trxCode (= VirtualPosOrderId "ORDER-..."), OtherTrxCode;
--     hashValue = lower hex sha256(upper(CodeForHash).."T") on success, .."F" on failure; resultCode ""
--     on success. "decline" = resultCode 001 (Cardholder Confirmation Failed). A used page -> HTML error (409).
--     The same fields go form-encoded (POST) to the dealer's NotifyUrl: accepted when the reply body is
--     exactly "OK", else retried, 3 attempts in all (0.2 s apart); attempts are listed at GET /_sandbox/outbox.
--   Non-3D: Data = {IsSuccessful, ResultCode ("" or CCC), ResultMessage, VirtualPosOrderId} (+ CardToken when
--     IsTokenized=1 stored the card).
--   PaymentStatus 0 waiting/failed, 1 pre-authorised, 2 paid, 3 cancelled, 4 fully refunded;
--   TrxStatus 0 pending, 1 success, 2 failed. TrxType 1 sale, 2 pre-auth, 3 capture, 4 void, 5 refund,
--   6 pool approve, 7 pool undo.
--
-- AFTER-SALE (PaymentDealerRequest{VirtualPosOrderId | OtherTrxCode, ...}; both or neither -> InvalidRequest).
--   Success Data = {IsSuccessful=true, ResultCode="", ResultMessage="", VirtualPosOrderId} unless said otherwise.
--   DoCapture {Amount (0/absent = all)}: PaymentDealer.DoCapture.InvalidRequest | PaymentNotFound |
--     PaymentIsNotPreAuth | InvalidAmount (bad or above the authorised amount). Closes the pre-auth: status 2.
--   DoVoid: PaymentDealer.DoVoid.InvalidRequest | PaymentNotFound | PaymentAlreadyCancelled |
--     PaymentCannotBeVoided (not paid/pre-authorised, or refunded) | VoidOnlyAllowedSameDay. -> status 3.
--   DoCreateRefundRequest {Amount (0/absent = the remaining amount)} -> Data {RefundRequestId} (the refund
--     completes at once here): PaymentDealer.DoCreateRefundRequest.InvalidRequest | PaymentNotFound |
--     PaymentCannotBeRefunded (not paid) | PaymentAlreadyRefunded | InvalidAmount |
--     RefundAmountExceedsRemainingAmount. Status 4 once fully refunded.
--   DoApprovePoolPayment / UndoApprovePoolPayment: PaymentDealer.<Op>.InvalidRequest | PaymentNotFound |
--     PaymentIsNotPoolPayment | PaymentIsNotPaid | PoolPaymentAlreadyApproved (approve) |
--     PoolPaymentNotApproved (undo).
--   GetDealerPaymentTrxDetailList {PaymentId | OtherTrxCode | VirtualPosOrderId} -> Data {PaymentDetail,
--     PaymentTrxDetailList}: PaymentDealer.GetDealerPaymentTrxDetailList.InvalidRequest | PaymentNotFound.
--
-- CARDS   GetBankCardInformation BankCardInformationRequest{BinNumber (6+ digits)} ->
--   Data {BankName, BankCode, BinNumber, CardType, CreditType, ProductCategory, GroupName};
--   PaymentDealer.GetBankCardInformation.InvalidRequest | BinNumberNotFound. BINs: M.bins below.
--   DoCalcPaymentTable {BinNumber (optional: all banks), Currency, OrderAmount, IsThreeD,
--   IsIncludedCommissionAmount} -> Data {BankPaymentInstallmentInfoList [{BankInfoName, BankCode,
--   PaymentInstallmentInfoList [{InstallmentNumber, DealerCommissionRate, DealerCommissionAmount, Amount,
--   PerInstallmentAmount, FirstInstallmentAmount}]}]}. Commission = OrderAmount * rate, half-up to the kurus;
--   Amount = OrderAmount + commission when IsIncludedCommissionAmount=1, else OrderAmount; installments are
--   floor(Amount/n), the first one takes the remainder. Foreign currency: only InstallmentNumber 1.
--   Codes: PaymentDealer.DoCalcPaymentTable.InvalidRequest | InvalidCurrencyCode | BinNumberNotFound |
--   ForeignCurrencyNotAvailableForThisDealer.
--
-- STORED CARDS  /DealerCustomer/* with DealerCustomerAuthentication + DealerCustomerRequest
--   (restricted dealer -> DealerCustomer.<Op>.TokenizationNotAvailableForDealer):
--   AddCustomerWithCard {CustomerCode, FirstName, LastName, ..., CardHolderFullName, CardNumber, ExpMonth,
--     ExpYear, CardName} -> Data {DealerCustomer {DealerCustomerId, CustomerCode, ...}, Card}
--     (DealerCustomer.AddCustomerWithCard.CustomerCodeAlreadyExists)
--   AddCard {DealerCustomerId | CustomerCode, card fields} -> Data {DealerCustomer, Card}
--   GetCardList {DealerCustomerId | CustomerCode} -> Data {DealerCustomer, CardListCount, CardList}
--   RemoveCard {CardToken} -> Data true
--   Card = {CardToken (GUID), CardHolderFullName, CardNumberFirstSix, CardNumberLastFour, ExpMonth, ExpYear,
--     CardName, CardType}. Codes: DealerCustomer.<Op>.InvalidRequest | CustomerNotFound | CardTokenNotFound,
--     DealerCustomer.CheckCardInfo.InvalidCardInfo. A CardToken pays via PaymentDealerRequest.CardToken
--     (no CardNumber/expiry/CVC). IsTokenized=1 on a payment stores the card (on success) under
--     CustomerInformation.DealerCustomerId or .CustomerCode (created if new).
--
-- SANDBOX ADMIN (not Moka's; JSON in, JSON out)
--   POST /moka/_sandbox/dealer {"DealerCode":"1730","NotifyUrl":"http://127.0.0.1:P/..."} ("" clears)
--   POST /moka/_sandbox/3d/complete {"threeDTrxCode":..., "action":"approve"|"decline"|"error", "code":"005"}
--     -> {"RedirectUrl":..., "Fields":{hashValue, resultCode, resultMessage, trxCode, OtherTrxCode}}
--     (sends the notification like the page does; unknown code -> 404, used -> 409, {"error":...})
--   POST /moka/_sandbox/age {"VirtualPosOrderId"|"OtherTrxCode":..., "Days":1} moves a payment's date back
--   POST /_sandbox/reset clears everything (payments, customers, NotifyUrls).
-- Any unexpected failure answers ResultCode "EX" with the message in ResultMessage.

local M = {}

M.credentials = {
  { DealerCode = "1730", Username = "sandbox", Password = "sandbox-pass",
    foreign_currency = true, pool = true, preauth = true, tokenization = true },
  { DealerCode = "1731", Username = "restricted", Password = "restricted-pass",
    foreign_currency = false, pool = false, preauth = false, tokenization = false },
}

M.cards = {
  approve = { "4111111111111111", "5555666677778884" },
  decline = "4000000000100505",   -- pattern: "40000000001" .. CCC .. "0" .. Luhn digit; this one is 005
  slow = "4000000000200008",      -- answers after 3 s
  server_error = "4000000000300006", -- HTTP 500
  slow_seconds = 3,
}

function M.handle(util)
  return util.send(200, '{"Data":null,"ResultCode":"EX","ResultMessage":"not implemented yet","Exception":null}',
    "application/json")
end

return M
