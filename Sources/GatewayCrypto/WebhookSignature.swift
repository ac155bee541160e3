/// `X-Gateway-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (contract 4.4):
/// Stripe's scheme, so a shop may reuse a Stripe-style verifier. `t` is the attempt's time,
/// so a receiver that refuses old timestamps (replays) still takes a retry.
public enum WebhookSignature {
    public static func header(secret: String, timestamp: Int64, body: some Collection<UInt8>) -> String {
        "t=\(timestamp),v1=\(Crypto.hex(mac(secret, timestamp, body)))"
    }

    /// What a receiver checks (the example receiver, the tests' and the load tester's): a
    /// `v1` that matches, and `t` within `toleranceSeconds` of `now`. Other parts (a future
    /// `v2`) are ignored; any one matching `v1` is enough (secret rotation sends two).
    public static func verify(header: String, secret: String, body: some Collection<UInt8>, now: Int64,
                              toleranceSeconds: Int64 = 300) -> Bool {
        var timestamp: Int64?
        var signatures: [String] = []
        for part in header.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "t": timestamp = Int64(kv[1])
            case "v1": signatures.append(String(kv[1]))
            default: continue
            }
        }
        guard let timestamp, abs(now - timestamp) <= toleranceSeconds else { return false }
        let expected = Array(Crypto.hex(mac(secret, timestamp, body)).utf8)
        return signatures.contains { Crypto.constantTimeEquals(Array($0.utf8), expected) }
    }

    private static func mac(_ secret: String, _ timestamp: Int64, _ body: some Collection<UInt8>) -> [UInt8] {
        Crypto.hmacSHA256(key: Array(secret.utf8), message: Array("\(timestamp).".utf8) + Array(body))
    }
}
