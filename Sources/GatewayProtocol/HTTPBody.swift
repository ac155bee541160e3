/// How an HTTP request's body is delimited, decided from its headers before any of it is read.
public enum HTTPFraming: Equatable, Sendable {
    /// No body.
    case none
    /// `Content-Length` bytes; a declared length past `Int` reads as `Int.max` (too large for any route).
    case length(Int)
    /// `Transfer-Encoding: chunked`.
    case chunked

    /// From the `Content-Length` and `Transfer-Encoding` values as sent (nil when absent).
    /// Anything but plain decimal digits, both headers at once, or a coding other than
    /// `chunked` is refused: a request whose end is ambiguous is never guessed at.
    public static func of(contentLength: String?, transferEncoding: String?) -> Result<HTTPFraming, GatewayError> {
        if let te = transferEncoding {
            guard contentLength == nil else {
                return .failure(.badRequest("Content-Length and Transfer-Encoding together"))
            }
            guard te.trimmingSpaces().lowercased() == "chunked" else {
                return .failure(.badRequest("only Transfer-Encoding: chunked is supported"))
            }
            return .success(.chunked)
        }
        guard let cl = contentLength else { return .success(.none) }
        let digits = Array(cl.trimmingSpaces().utf8)
        guard !digits.isEmpty, digits.allSatisfy({ (48...57).contains($0) }) else {
            return .failure(.badRequest("Content-Length must be a decimal number of bytes"))
        }
        var value = 0
        for d in digits {
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times.addingReportingOverflow(Int(d - 48))
            if o1 || o2 { return .success(.length(Int.max)) }
            value = next
        }
        return .success(value == 0 ? .none : .length(value))
    }
}

/// Takes in one request body up to `limit` bytes: the running total is checked as bytes
/// arrive, so nothing past the limit is ever kept, whatever the headers said. Chunked
/// bodies are decoded here (the size lines and trailers are bounded too). A pure state
/// machine: the lws glue feeds it and acts on the step it returns.
public struct HTTPBodyIntake: Sendable {
    public enum Step: Equatable, Sendable {
        case more
        case complete
        case tooLarge
        case malformed(String)
    }

    /// Longest chunk-size line (size, extensions), and all trailer lines together.
    public static let maxChunkLine = 1024
    public static let maxTrailers = 8192

    public let framing: HTTPFraming
    public let limit: Int
    public private(set) var body: [UInt8] = []
    private var state: ChunkState = .size
    private var lineBytes = 0
    private var chunkSize = 0
    private var sizeDigits = 0
    private var trailerBytes = 0
    private var finished = false

    private enum ChunkState: Sendable {
        case size, ext, sizeLF, data(Int), dataCR, dataLF, trailerStart, trailer, trailerLF, finalLF
    }

    public init(framing: HTTPFraming, limit: Int) {
        self.framing = framing
        self.limit = limit
        if case .length(let n) = framing, n <= limit { body.reserveCapacity(n) }
    }

    /// What the headers alone decide: `.tooLarge` for a declared length over the limit,
    /// `.complete` when there is no body, else `.more`.
    public var start: Step {
        switch framing {
        case .none: .complete
        case .length(let n): n > limit ? .tooLarge : .more
        case .chunked: .more
        }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Step {
        guard !finished else { return .complete }
        switch framing {
        case .none:
            return .complete
        case .length(let n):
            guard body.count + bytes.count <= min(n, limit) else { return .tooLarge }
            body.append(contentsOf: bytes)
            if body.count == n { finished = true; return .complete }
            return .more
        case .chunked:
            return feedChunked(bytes)
        }
    }

    public mutating func feed(_ bytes: [UInt8]) -> Step {
        bytes.withUnsafeBytes { feed($0) }
    }

    private mutating func feedChunked(_ bytes: UnsafeRawBufferPointer) -> Step {
        var i = 0
        let cr: UInt8 = 13, lf: UInt8 = 10
        while i < bytes.count {
            let b = bytes[i]
            switch state {
            case .size:
                lineBytes += 1
                if let v = Self.hexValue(b) {
                    sizeDigits += 1
                    guard sizeDigits <= 15 else { return .tooLarge }
                    chunkSize = chunkSize * 16 + v
                } else if sizeDigits == 0 {
                    return .malformed("chunk size must be hexadecimal")
                } else if b == cr {
                    state = .sizeLF
                } else if b == UInt8(ascii: ";") || b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") {
                    state = .ext
                } else {
                    return .malformed("chunk size must be hexadecimal")
                }
            case .ext:
                lineBytes += 1
                if b == cr { state = .sizeLF } else if b == lf { return .malformed("chunk line must end in CRLF") }
            case .sizeLF:
                guard b == lf else { return .malformed("chunk line must end in CRLF") }
                if chunkSize == 0 {
                    state = .trailerStart
                } else {
                    guard chunkSize <= limit - body.count else { return .tooLarge }
                    state = .data(chunkSize)
                }
                chunkSize = 0
                sizeDigits = 0
                lineBytes = 0
            case .data(let left):
                let take = min(left, bytes.count - i)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                state = left - take == 0 ? .dataCR : .data(left - take)
                continue
            case .dataCR:
                guard b == cr else { return .malformed("chunk data must end in CRLF") }
                state = .dataLF
            case .dataLF:
                guard b == lf else { return .malformed("chunk data must end in CRLF") }
                state = .size
            case .trailerStart:
                trailerBytes += 1
                if b == cr { state = .finalLF } else { state = .trailer }
            case .trailer:
                trailerBytes += 1
                if b == cr { state = .trailerLF }
            case .trailerLF:
                trailerBytes += 1
                guard b == lf else { return .malformed("trailer line must end in CRLF") }
                state = .trailerStart
            case .finalLF:
                guard b == lf else { return .malformed("chunked body must end in CRLF") }
                finished = true
                return .complete
            }
            if lineBytes > Self.maxChunkLine { return .malformed("chunk size line too long") }
            if trailerBytes > Self.maxTrailers { return .malformed("trailers too long") }
            i += 1
        }
        return .more
    }

    private static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 48...57: Int(b - 48)
        case 65...70: Int(b - 55)
        case 97...102: Int(b - 87)
        default: nil
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
