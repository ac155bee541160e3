import GatewayProtocol

/// A watch on a product's price, as stored per watcher.
public struct Watch: Equatable, Sendable {
    public var product: String
    public var user: String
    /// Explicit threshold; without it the price at watch time is the baseline.
    public var below: Int64?
    public var baseline: Int64
    public var lastAlerted: Int64?
    public var lastAlertAt: Int64?
    public var expiresAt: Int64

    public init(product: String, user: String, below: Int64?, baseline: Int64, lastAlerted: Int64? = nil,
                lastAlertAt: Int64? = nil, expiresAt: Int64) {
        self.product = product
        self.user = user
        self.below = below
        self.baseline = baseline
        self.lastAlerted = lastAlerted
        self.lastAlertAt = lastAlertAt
        self.expiresAt = expiresAt
    }

    /// An alert needs a price strictly below this.
    public var threshold: Int64 { below ?? baseline }

    /// `below|baseline|lastAlerted|lastAlertAt|expiresAt`, empty for none: one hash field per watcher.
    public var record: String {
        [below.map(String.init) ?? "", String(baseline), lastAlerted.map(String.init) ?? "",
         lastAlertAt.map(String.init) ?? "", String(expiresAt)].joined(separator: "|")
    }

    public init?(product: String, user: String, record: String) {
        let p = record.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard p.count == 5, let baseline = Int64(p[1]), let expiresAt = Int64(p[4]),
              let below = Self.optionalField(p[0]), let lastAlerted = Self.optionalField(p[2]),
              let lastAlertAt = Self.optionalField(p[3]) else { return nil }
        self.init(product: product, user: user, below: below, baseline: baseline, lastAlerted: lastAlerted,
                  lastAlertAt: lastAlertAt, expiresAt: expiresAt)
    }

    /// Empty is "none" (`.some(nil)`); anything else must be an integer, else `nil` (malformed).
    private static func optionalField(_ s: String) -> Int64?? {
        if s.isEmpty { return .some(nil) }
        guard let v = Int64(s) else { return nil }
        return .some(v)
    }

    public func json(price: Int64?) -> JSON {
        var f: [(String, JSON)] = [("product", .string(product))]
        if let price { f.append(("price", .int(price))) }
        f.append(("below", .int(threshold)))
        return .object(f)
    }
}

/// Price-drop rules (PROTOCOL.md section 3): alert below the threshold and below the
/// last alerted price; at most one alert per cooldown unless the price is a new low.
public enum AlertRules {
    public static func shouldAlert(_ w: Watch, newPrice: Int64, now: Int64, cooldownMs: Int64) -> Bool {
        guard now < w.expiresAt, newPrice < w.threshold else { return false }
        guard let last = w.lastAlerted else { return true }
        guard newPrice < last else { return false }
        if let at = w.lastAlertAt, now - at < cooldownMs {
            // A new low for this watch passes the cooldown; with the rule above every
            // alert is one, so the cooldown only matters once a watch is re-armed.
            return newPrice < last
        }
        return true
    }

    /// The watch after its alert went out.
    public static func alerted(_ w: Watch, price: Int64, now: Int64) -> Watch {
        var w = w
        w.lastAlerted = price
        w.lastAlertAt = now
        return w
    }

    public static func alertData(_ w: Watch, title: String, previous: Int64, price: Int64, currency: String) -> JSON {
        var f: [(String, JSON)] = [("product", .string(w.product)), ("title", .string(title)), ("previous", .int(previous)),
                                   ("price", .int(price)), ("currency", .string(currency))]
        if let below = w.below { f.append(("below", .int(below))) }
        return .object(f)
    }
}

/// Group message rules that need no storage: size of the text, links from buyers.
public enum GroupRules {
    public static let maxTextCharacters = CommandDecoder.maxTextLength

    /// Text (already trimmed by the decoder) is 1 to 1000 characters AND at most `maxBytes`
    /// (`groups.max_text_bytes`) UTF-8 bytes: one letter with thousands of combining marks
    /// is a single character. `bad_request`, as the character rule always was; bytes are
    /// checked first so a huge text costs no grapheme walk.
    public static func textError(_ text: String, maxBytes: Int) -> GatewayError? {
        guard text.utf8.count <= maxBytes else {
            return .badRequest("\"text\" must be at most \(maxBytes) bytes of UTF-8")
        }
        guard (1...maxTextCharacters).contains(text.count) else {
            return .badRequest("\"text\" must be 1 to \(maxTextCharacters) characters")
        }
        return nil
    }

    /// `http://`, `https://` or `www.` anywhere, any case.
    public static func containsLink(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower.contains("http://") || lower.contains("https://") || lower.contains("www.")
    }
}
