// libFuzzer entry for the gateway's pure input handling (built by Tests/Fuzz/run.sh, not SwiftPM).
// The first input byte picks the target, the rest is the input:
//   0: JSON.parse (default depth), and a serialize/parse round trip of what it accepts
//   1: CommandDecoder.decodeFrame (a whole inbound frame, every line decoded)
//   2: TokenVerifier.verify (the token as text)
//   3: TokenVerifier.verify of a token signed with the test secret, payload = the input,
//      so the fuzzer reaches the claim checks past the signature
//   4: HTTP bodies: OrderRequest, PaymentNotify and ProductPrice decoding of one JSON body
//   5: payment providers' form bodies: FormFields.parse, every value as a yuan amount, and the
//      易支付 check over what parsed (it must refuse: nobody here knows the key)
//   6: a webhook receiver's answer: HTTPResponseReader fed whole and fed in two pieces (the
//      status it reads must not depend on the split), and the input as a webhooks.url (HTTPTarget)
// Decoded group text also goes through GroupRules.textError, as the node does.
// A crash, a sanitizer report or a slow input (-timeout) is a finding.
import CommunityCore
import GatewayAuth
import GatewayCrypto
import GatewayPayments
import GatewayProtocol
import OrderCore

private let secret = Array("fuzz-secret".utf8)
private let verifier = TokenVerifier(secret: secret)
private let headerPart = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let selector = data[0] % 7
    let body = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    switch selector {
    case 0:
        if let value = try? JSON.parse(body) {
            // What we accept we must write back as JSON that parses to the same value.
            let text = value.serialized()
            guard let again = try? JSON.parse(text), again == value || hasNaN(value) else {
                fatalError("round trip changed the value: \(text)")
            }
        }
    case 1:
        for line in CommandDecoder.decodeFrame(body) {
            guard case .command(_, let command) = line else { continue }
            switch command {
            case .community(.publish(_, let text, _)):
                _ = GroupRules.textError(text, maxBytes: 4000)
            case .community(.moderate(_, _, _, _, let seconds)):
                // What the node computes from it: must not overflow for anything decoded.
                consume(Int64(1_800_000_000_000) + (seconds ?? Ranges.defaultMuteSeconds) * 1000)
            default:
                _ = command.op
            }
        }
    case 2:
        let token = String(decoding: body, as: UTF8.self)
        _ = verifier.verify(token, nowSeconds: 1_800_000_000)
    case 3:
        let input = headerPart + "." + Base64URL.encode(Array(body))
        let token = input + "." + Base64URL.encode(Crypto.hmacSHA256(key: secret, message: Array(input.utf8)))
        if case .success(let claims) = verifier.verify(token, nowSeconds: 1_800_000_000) {
            guard Names.isValidID(claims.sub), (claims.name?.utf8.count ?? 0) <= 128 else {
                fatalError("accepted claims that break the rules: \(claims)")
            }
        }
    case 6:
        var whole = HTTPResponseReader()
        let once = whole.feed(body)
        let cut = body.isEmpty ? 0 : Int(body[0]) % body.count
        var split = HTTPResponseReader()
        var twice = split.feed(UnsafeRawBufferPointer(rebasing: body[..<cut]))
        if twice == .more { twice = split.feed(UnsafeRawBufferPointer(rebasing: body[cut...])) }
        if case .answered(let status, _) = once {
            guard (100...999).contains(status), case .answered(status, _) = twice else {
                fatalError("answer \(once) whole, \(twice) split at \(cut)")
            }
        }
        _ = try? HTTPTarget(String(decoding: body, as: UTF8.self))
    case 5:
        guard case .success(let fields) = FormFields.parse(body) else { return 0 }
        for value in fields.values {
            guard let fen = YuanAmount.fen(value) else { continue }
            // Exact: what it accepts is in range and reads back the same from its own yuan form.
            guard Ranges.amount.contains(fen), YuanAmount.fen("\(fen / 100).\(fen % 100 < 10 ? "0" : "")\(fen % 100)") == fen else {
                fatalError("yuan \(value) read as \(fen) fen")
            }
        }
        if case .success = EpayNotify(merchantKey: "fuzz-key").verify(fields: fields) {
            fatalError("a 易支付 notify passed without its key: \(fields)")
        }
    default:
        guard let json = try? JSON.parse(body) else { return 0 }
        if case .success(let request) = OrderRequest.decode(json), !(1...10).contains(request.quantity) {
            fatalError("quantity out of range: \(request.quantity)")
        }
        if case .success(let notify) = PaymentNotify.decode(json), !Ranges.amount.contains(notify.amount) {
            fatalError("amount out of range: \(notify.amount)")
        }
        if case .success(let price?) = ProductPrice.decode(json["price"]) {
            consume(price * 10)  // an order amount: in range by construction
        }
    }
    return 0
}

/// Keeps the optimizer from dropping arithmetic whose only effect is its overflow trap.
nonisolated(unsafe) private var sink: Int64 = 0
@inline(never) private func consume(_ v: Int64) { sink ^= v }

/// Doubles never come out NaN from the parser, so this is only a guard for the equality above.
private func hasNaN(_ v: JSON) -> Bool {
    switch v {
    case .double(let d): return d.isNaN
    case .array(let a): return a.contains(where: hasNaN)
    case .object(let o): return o.contains { hasNaN($0.1) }
    default: return false
    }
}
