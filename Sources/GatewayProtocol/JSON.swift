/// A JSON value. Objects keep member order so replies serialize as they were built.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    /// Numbers without fraction or exponent that fit Int64.
    case int(Int64)
    /// Every other number.
    case double(Double)
    case string(String)
    case array([JSON])
    /// Insertion order kept; with duplicate keys the last one wins on lookup.
    case object([(String, JSON)])

    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null):
            return true
        case let (.bool(a), .bool(b)):
            return a == b
        case let (.int(a), .int(b)):
            return a == b
        case let (.double(a), .double(b)):
            return a == b
        case let (.string(a), .string(b)):
            return a == b
        case let (.array(a), .array(b)):
            return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for i in a.indices where a[i].0 != b[i].0 || a[i].1 != b[i].1 {
                return false
            }
            return true
        default:
            return false
        }
    }
}

public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    /// Byte offset in the input where the problem was found.
    public let offset: Int

    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(message) at offset \(offset)" }
}

// MARK: - Parsing

extension JSON {
    /// The parser recurses once per nesting level, so depth is its stack guard: no caller
    /// may lift it past this, whatever `maxDepth` it passes (a few KiB of stack at -Onone,
    /// well inside a 512 KiB thread stack).
    public static let maxDepthCeiling = 128

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 32) throws(JSONError) -> JSON {
        let result: Result<JSON, JSONError> = bytes.withMemoryRebound(to: UInt8.self) { buf in
            var parser = JSONParser(buf, maxDepth: maxDepth)
            do throws(JSONError) {
                return .success(try parser.parseDocument())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = 32) throws(JSONError) -> JSON {
        let result: Result<JSON, JSONError> = bytes.withUnsafeBytes { raw in
            do throws(JSONError) {
                return .success(try parse(raw, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    public static func parse(_ text: String, maxDepth: Int = 32) throws(JSONError) -> JSON {
        var text = text
        let result: Result<JSON, JSONError> = text.withUTF8 { buf in
            do throws(JSONError) {
                return .success(try parse(UnsafeRawBufferPointer(buf), maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

private enum Byte {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
}

/// Recursive descent over the caller's bytes; strings are copied out only once validated.
private struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    let end: Int
    let maxDepth: Int
    var pos = 0
    /// Reused for strings that contain escapes, so only those pay for a copy.
    var scratch: [UInt8] = []

    init(_ buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.end = buf.count
        self.maxDepth = min(max(maxDepth, 0), JSON.maxDepthCeiling)
    }

    func error(_ message: String, at offset: Int? = nil) -> JSONError {
        JSONError(message: message, offset: offset ?? pos)
    }

    mutating func parseDocument() throws(JSONError) -> JSON {
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if pos != end { throw error("unexpected trailing characters") }
        return value
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            switch buf[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONError) -> JSON {
        skipWhitespace()
        guard pos < end else { throw error("unexpected end of input") }
        switch buf[pos] {
        case Byte.openBrace:
            return try parseObject(depth: depth + 1)
        case Byte.openBracket:
            return try parseArray(depth: depth + 1)
        case Byte.quote:
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case Byte.minus, Byte.zero...Byte.nine:
            return try parseNumber()
        default:
            throw error("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard end - pos >= count else { throw error("invalid literal") }
        let p = literal.utf8Start
        for i in 0..<count where buf[pos + i] != p[i] {
            throw error("invalid literal", at: pos + i)
        }
        pos += count
    }

    mutating func parseArray(depth: Int) throws(JSONError) -> JSON {
        if depth > maxDepth { throw error("nesting too deep") }
        pos += 1
        skipWhitespace()
        var items: [JSON] = []
        if pos < end, buf[pos] == Byte.closeBracket {
            pos += 1
            return .array(items)
        }
        while true {
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard pos < end else { throw error("unexpected end of input in array") }
            switch buf[pos] {
            case Byte.comma:
                pos += 1
            case Byte.closeBracket:
                pos += 1
                return .array(items)
            default:
                throw error("expected ',' or ']'")
            }
        }
    }

    mutating func parseObject(depth: Int) throws(JSONError) -> JSON {
        if depth > maxDepth { throw error("nesting too deep") }
        pos += 1
        skipWhitespace()
        var members: [(String, JSON)] = []
        if pos < end, buf[pos] == Byte.closeBrace {
            pos += 1
            return .object(members)
        }
        while true {
            guard pos < end else { throw error("unexpected end of input in object") }
            guard buf[pos] == Byte.quote else { throw error("expected string key") }
            let key = try parseString()
            skipWhitespace()
            guard pos < end, buf[pos] == Byte.colon else { throw error("expected ':'") }
            pos += 1
            let value = try parseValue(depth: depth)
            members.append((key, value))
            skipWhitespace()
            guard pos < end else { throw error("unexpected end of input in object") }
            switch buf[pos] {
            case Byte.comma:
                pos += 1
                skipWhitespace()
            case Byte.closeBrace:
                pos += 1
                return .object(members)
            default:
                throw error("expected ',' or '}'")
            }
        }
    }

    /// Parses a string starting at its opening quote.
    mutating func parseString() throws(JSONError) -> String {
        pos += 1
        let start = pos
        // Fast path: no escapes, so the String is built straight from the input slice.
        while pos < end {
            let b = buf[pos]
            if b == Byte.quote {
                let s = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
                pos += 1
                return s
            } else if b == Byte.backslash {
                return try parseEscapedString(from: start)
            } else if b < 0x20 {
                throw error("control character in string")
            } else if b < 0x80 {
                pos += 1
            } else {
                pos += try utf8SequenceLength(at: pos)
            }
        }
        throw error("unterminated string")
    }

    /// Slow path, entered at the first backslash; the bytes before it are already valid.
    mutating func parseEscapedString(from start: Int) throws(JSONError) -> String {
        scratch.removeAll(keepingCapacity: true)
        var runStart = start
        while pos < end {
            let b = buf[pos]
            if b == Byte.quote {
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<pos]))
                pos += 1
                return String(decoding: scratch, as: UTF8.self)
            } else if b == Byte.backslash {
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: buf[runStart..<pos]))
                try decodeEscape()
                runStart = pos
            } else if b < 0x20 {
                throw error("control character in string")
            } else if b < 0x80 {
                pos += 1
            } else {
                pos += try utf8SequenceLength(at: pos)
            }
        }
        throw error("unterminated string")
    }

    /// Decodes the escape at `pos` (a backslash) into `scratch`.
    mutating func decodeEscape() throws(JSONError) {
        let escapeStart = pos
        pos += 1
        guard pos < end else { throw error("unterminated string") }
        let c = buf[pos]
        pos += 1
        switch c {
        case Byte.quote: scratch.append(Byte.quote)
        case Byte.backslash: scratch.append(Byte.backslash)
        case Byte.slash: scratch.append(Byte.slash)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try readHex4()
            if (0xD800...0xDBFF).contains(scalar) {
                guard end - pos >= 6, buf[pos] == Byte.backslash, buf[pos + 1] == UInt8(ascii: "u") else {
                    throw error("unpaired surrogate", at: escapeStart)
                }
                pos += 2
                let low = try readHex4()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error("unpaired surrogate", at: escapeStart)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw error("unpaired surrogate", at: escapeStart)
            }
            appendUTF8(scalar)
        default:
            throw error("invalid escape", at: escapeStart)
        }
    }

    mutating func readHex4() throws(JSONError) -> UInt32 {
        guard end - pos >= 4 else { throw error("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = buf[pos]
            let digit: UInt8
            switch b {
            case Byte.zero...Byte.nine: digit = b - Byte.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            pos += 1
        }
        return value
    }

    mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Length of the well-formed UTF-8 sequence at `i` (lead byte >= 0x80), per Unicode table 3-7.
    func utf8SequenceLength(at i: Int) throws(JSONError) -> Int {
        let b0 = buf[i]
        let length: Int
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; hi = 0x9F
        case 0xF0: length = 4; lo = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; hi = 0x8F
        default: throw error("invalid UTF-8", at: i)
        }
        guard end - i >= length else { throw error("invalid UTF-8", at: i) }
        let b1 = buf[i + 1]
        guard b1 >= lo, b1 <= hi else { throw error("invalid UTF-8", at: i) }
        for k in 2..<max(length, 2) where buf[i + k] & 0xC0 != 0x80 {
            throw error("invalid UTF-8", at: i)
        }
        return length
    }

    @inline(__always)
    func isDigit(_ i: Int) -> Bool {
        i < end && buf[i] >= Byte.zero && buf[i] <= Byte.nine
    }

    mutating func parseNumber() throws(JSONError) -> JSON {
        let start = pos
        var negative = false
        if buf[pos] == Byte.minus {
            negative = true
            pos += 1
        }
        let intStart = pos
        guard isDigit(pos) else { throw error("invalid number") }
        if buf[pos] == Byte.zero {
            pos += 1
            if isDigit(pos) { throw error("leading zero in number", at: pos - 1) }
        } else {
            while isDigit(pos) { pos += 1 }
        }
        let intEnd = pos
        var integral = true
        if pos < end, buf[pos] == Byte.dot {
            integral = false
            pos += 1
            guard isDigit(pos) else { throw error("invalid number: expected digit after '.'") }
            while isDigit(pos) { pos += 1 }
        }
        if pos < end, buf[pos] | 0x20 == UInt8(ascii: "e") {
            integral = false
            pos += 1
            if pos < end, buf[pos] == Byte.plus || buf[pos] == Byte.minus { pos += 1 }
            guard isDigit(pos) else { throw error("invalid number: expected digit in exponent") }
            while isDigit(pos) { pos += 1 }
        }
        if integral, intEnd - intStart <= 19 {
            // Accumulate negatively so Int64.min fits.
            var value: Int64 = 0
            var overflow = false
            for i in intStart..<intEnd {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.subtractingReportingOverflow(Int64(buf[i] - Byte.zero))
                if o1 || o2 { overflow = true; break }
                value = s
            }
            if !overflow {
                if negative { return .int(value) }
                if value != .min { return .int(-value) }
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { throw error("number out of range", at: start) }
        return .double(d)
    }
}

// MARK: - Accessors

extension JSON {
    public subscript(key: String) -> JSON? {
        guard case let .object(members) = self else { return nil }
        for member in members.reversed() where member.0 == key {
            return member.1
        }
        return nil
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d): return exactInt64(d)
        default: return nil
        }
    }

    /// `Int64(exactly:)` without libm: its `trunc` call leaves executables that never link
    /// libm with an undefined symbol.
    private func exactInt64(_ d: Double) -> Int64? {
        guard d >= -9_223_372_036_854_775_808.0, d < 9_223_372_036_854_775_808.0 else { return nil }
        let i = Int64(d)
        return Double(i) == d ? i : nil
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var objectValue: [(String, JSON)]? {
        if case let .object(o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

// MARK: - Serialization

extension JSON {
    public func serialized() -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64)
        write(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    public func write(into buffer: inout [UInt8]) {
        switch self {
        case .null:
            buffer.append(contentsOf: "null".utf8)
        case let .bool(b):
            buffer.append(contentsOf: (b ? "true" : "false").utf8)
        case let .int(i):
            appendDecimal(i, into: &buffer)
        case let .double(d):
            guard d.isFinite else {
                buffer.append(contentsOf: "null".utf8)
                return
            }
            let text = d.description
            buffer.append(contentsOf: text.utf8)
            // Keep a fraction mark so the value parses back as a double, not an int.
            if !text.utf8.contains(where: { $0 == Byte.dot || $0 | 0x20 == UInt8(ascii: "e") }) {
                buffer.append(contentsOf: ".0".utf8)
            }
        case let .string(s):
            appendJSONString(s, into: &buffer)
        case let .array(items):
            buffer.append(Byte.openBracket)
            for (i, item) in items.enumerated() {
                if i > 0 { buffer.append(Byte.comma) }
                item.write(into: &buffer)
            }
            buffer.append(Byte.closeBracket)
        case let .object(members):
            buffer.append(Byte.openBrace)
            for (i, member) in members.enumerated() {
                if i > 0 { buffer.append(Byte.comma) }
                appendJSONString(member.0, into: &buffer)
                buffer.append(Byte.colon)
                member.1.write(into: &buffer)
            }
            buffer.append(Byte.closeBrace)
        }
    }
}

/// Appends a JSON string literal (with quotes) for `s`, escaping ", \, control chars
/// (\n \r \t \b \f, others \u00XX). Non-ASCII passes through as UTF-8.
public func appendJSONString(_ s: some StringProtocol, into buffer: inout [UInt8]) {
    buffer.append(Byte.quote)
    let done: Void? = s.utf8.withContiguousStorageIfAvailable { appendEscaped($0, into: &buffer) }
    if done == nil {
        appendEscaped(s.utf8, into: &buffer)
    }
    buffer.append(Byte.quote)
}

/// Digits straight into the buffer: ids and offsets are the bulk of what replies carry.
private func appendDecimal(_ value: Int64, into buffer: inout [UInt8]) {
    if value < 0 { buffer.append(Byte.minus) }
    var magnitude = value.magnitude
    if magnitude < 10 {
        buffer.append(Byte.zero + UInt8(magnitude))
        return
    }
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
        var i = digits.count
        while magnitude > 0 {
            i -= 1
            digits[i] = Byte.zero + UInt8(magnitude % 10)
            magnitude /= 10
        }
        buffer.append(contentsOf: UnsafeBufferPointer(rebasing: digits[i...]))
    }
}

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

/// Copies unescaped runs in one append each; most strings are a single run.
@inline(__always)
private func appendEscaped<C: Collection>(_ bytes: C, into buffer: inout [UInt8]) where C.Element == UInt8 {
    var runStart = bytes.startIndex
    var i = bytes.startIndex
    while i != bytes.endIndex {
        let b = bytes[i]
        if b >= 0x20 && b != Byte.quote && b != Byte.backslash {
            bytes.formIndex(after: &i)
            continue
        }
        if runStart != i { buffer.append(contentsOf: bytes[runStart..<i]) }
        buffer.append(Byte.backslash)
        switch b {
        case Byte.quote: buffer.append(Byte.quote)
        case Byte.backslash: buffer.append(Byte.backslash)
        case 0x0A: buffer.append(UInt8(ascii: "n"))
        case 0x0D: buffer.append(UInt8(ascii: "r"))
        case 0x09: buffer.append(UInt8(ascii: "t"))
        case 0x08: buffer.append(UInt8(ascii: "b"))
        case 0x0C: buffer.append(UInt8(ascii: "f"))
        default:
            buffer.append(contentsOf: "u00".utf8)
            buffer.append(hexDigits[Int(b >> 4)])
            buffer.append(hexDigits[Int(b & 0x0F)])
        }
        bytes.formIndex(after: &i)
        runStart = i
    }
    if runStart != bytes.endIndex { buffer.append(contentsOf: bytes[runStart...]) }
}
