/// `application/x-www-form-urlencoded` (a body, or a query string), strictly: every
/// `name=value` pair well-formed, percent escapes complete, `+` a space, valid UTF-8, each
/// name once. A provider's signature covers the decoded values, so one reading matters.
public enum FormFields {
    public static func parse(_ bytes: some Collection<UInt8>) -> Result<[String: String], ProviderRefusal> {
        var fields: [String: String] = [:]
        guard !bytes.isEmpty else { return .failure(.malformed("empty form")) }
        for pair in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: false) {
            guard let eq = pair.firstIndex(of: UInt8(ascii: "=")) else {
                return .failure(.malformed("a form field without '='"))
            }
            guard let name = decode(pair[pair.startIndex..<eq]), !name.isEmpty else {
                return .failure(.malformed("a form field name is empty or badly escaped"))
            }
            guard let value = decode(pair[pair.index(after: eq)...]) else {
                return .failure(.malformed("form field \(name) is badly escaped"))
            }
            guard fields.updateValue(value, forKey: name) == nil else {
                return .failure(.malformed("form field \(name) appears twice"))
            }
        }
        return .success(fields)
    }

    /// Percent-decoded text; nil for an incomplete escape or bytes that are not UTF-8.
    static func decode(_ raw: some Collection<UInt8>) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i != raw.endIndex {
            let c = raw[i]
            switch c {
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                let h = raw.index(after: i)
                guard h != raw.endIndex else { return nil }
                let l = raw.index(after: h)
                guard l != raw.endIndex, let high = hexValue(raw[h]), let low = hexValue(raw[l]) else { return nil }
                out.append(high << 4 | low)
                i = l
            default:
                out.append(c)
            }
            i = raw.index(after: i)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// What Alipay and 易支付 sign: non-empty fields but `sign` and `sign_type`, sorted by
    /// name in byte order, `name=value` (decoded values, not re-encoded) joined by `&`.
    public static func signingContent(_ fields: [String: String]) -> String {
        fields.filter { !$0.value.isEmpty && $0.key != "sign" && $0.key != "sign_type" }
            .sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            .map { "\($0.key)=\($0.value)" }
            .joined(separator: "&")
    }
}
