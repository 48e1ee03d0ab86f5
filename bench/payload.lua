-- The benchmark's request (~500 bytes of JSON) and answer (~200 bytes), shared by every client
-- and by wrk's script. A card-payment-shaped body with test values only.
local request = '{"PaymentDealerAuthentication":{"DealerCode":"1731","Username":"bench-user",'
  .. '"Password":"bench-password-not-secret","CheckKey":"6f1c0b6a1f0e8d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2918f7e6d5c4b3a29"},'
  .. '"PaymentDealerRequest":{"CardHolderFullName":"Bench Mark","CardNumber":"4111111111111111",'
  .. '"ExpMonth":"12","ExpYear":"2030","CvcNumber":"000","Amount":"27.50","Currency":"TL",'
  .. '"InstallmentNumber":1,"ClientIP":"127.0.0.1","OtherTrxCode":"bench-0001-0002-0003",'
  .. '"IsPreAuth":0,"IsPoolPayment":0,"Description":"paykit transport benchmark"}}'
local response = '{"Data":{"IsSuccessful":true,"ResultCode":"","ResultMessage":"",'
  .. '"VirtualPosOrderId":"ORDER-20261124-0000001","OtherTrxCode":"bench-0001-0002-0003"},'
  .. '"ResultCode":"Success","ResultMessage":"","Exception":null}'
return { request = request, response = response }
