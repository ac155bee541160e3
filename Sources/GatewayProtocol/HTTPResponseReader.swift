/// Reads one HTTP/1.x answer to a request this side sent: the status is all that matters,
/// the body is taken in (up to `bodyLimit`) only to find where the answer ends, so the
/// connection can carry the next request. Anything odd after the status line still yields
/// the status, but the connection is not reused; so does a body that only ends at the close
/// (its status counts as soon as the headers are in, nobody waits for a close that may not come). A pure state machine: the socket glue
/// feeds it bytes and acts on the step.
public struct HTTPResponseReader: Sendable {
    public enum Step: Equatable, Sendable {
        case more
        /// The answer is complete; `reusable`: the connection may carry another request.
        case answered(status: Int, reusable: Bool)
        /// No usable status line or headers.
        case malformed(String)
    }

    public static let headLimit = 16 * 1024
    public static let bodyLimit = 64 * 1024

    /// Some byte of an answer arrived.
    public private(set) var sawBytes = false
    private var head: [UInt8] = []
    private var status = 0
    private var keepAlive = false
    private var body: Body?
    private var done = false

    private enum Body: Sendable {
        case framed(HTTPBodyIntake)
        /// Neither length nor chunked: the body ends when the server closes.
        case untilClose
    }

    public init() {}

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Step {
        guard !done else { return .answered(status: status, reusable: false) }
        if !bytes.isEmpty { sawBytes = true }
        var rest = bytes
        while body == nil {
            guard !rest.isEmpty else { return .more }
            // Only the bytes up to the blank line belong to the head.
            let (consumed, complete) = takeHead(rest)
            rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
            guard complete else {
                return head.count > Self.headLimit ? .malformed("the answer's headers are too long") : .more
            }
            if let problem = parseHead() { return .malformed(problem) }
            switch body {
            case .untilClose?: return finish(reusable: false)
            case .framed(let intake)?:
                switch intake.start {
                case .complete: return finish(reusable: keepAlive && rest.isEmpty)
                case .tooLarge: return finish(reusable: false)
                default: break
                }
            case nil: break  // an interim answer: the real one follows
            }
        }
        switch body! {
        case .untilClose:
            return finish(reusable: false)
        case .framed(var intake):
            let step = intake.feed(rest)
            body = .framed(intake)
            switch step {
            case .more: return .more
            case .complete: return finish(reusable: keepAlive)
            case .tooLarge, .malformed: return finish(reusable: false)
            }
        }
    }

    public mutating func feed(_ bytes: [UInt8]) -> Step {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The server closed the connection: an answer whose status line arrived counts (its
    /// body, cut short or not, is not read anyway).
    public mutating func peerClosed() -> Step {
        if done || body != nil { return finish(reusable: false) }
        return .malformed(sawBytes ? "the connection closed inside the answer's headers" : "the connection closed without an answer")
    }

    /// The request's time ran out: as with a close, an answer whose headers arrived counts
    /// (the receiver took the request; only its body is late), the connection is not reused.
    public mutating func timedOut() -> Step {
        if done || body != nil { return finish(reusable: false) }
        return .malformed(sawBytes ? "the answer's headers did not arrive in time" : "no answer in time")
    }

    private mutating func finish(reusable: Bool) -> Step {
        done = true
        return .answered(status: status, reusable: reusable)
    }

    /// Appends head bytes up to and including the blank line ending it.
    private mutating func takeHead(_ bytes: UnsafeRawBufferPointer) -> (consumed: Int, complete: Bool) {
        for (i, b) in bytes.enumerated() {
            head.append(b)
            if b == 10, head.count >= 2,
               head[head.count - 2] == 10 || (head.count >= 4 && head[head.count - 2] == 13 && head[head.count - 3] == 10) {
                return (i + 1, true)
            }
            if head.count > Self.headLimit { return (i + 1, false) }
        }
        return (bytes.count, false)
    }

    /// The status line and the headers that decide framing and reuse; a 1xx interim answer
    /// is skipped (the real one follows).
    private mutating func parseHead() -> String? {
        let text = String(decoding: head, as: UTF8.self)
        head.removeAll(keepingCapacity: true)
        // "\r\n" is one Character to Swift.
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\r\n" || $0 == "\n" })
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let statusLine = lines.first else { return "no status line" }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0",
              parts[1].count == 3, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let code = Int(parts[1]),
              (100...599).contains(code) else {
            return "not an HTTP/1.x status line"
        }
        var contentLength: String?
        var transferEncoding: String?
        var connection: [String] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex, line.first != " ", line.first != "\t" else {
                return "a header line without a name"
            }
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...]).trimmed(" \t")
            switch name {
            case "content-length":
                guard contentLength == nil || contentLength == value else { return "two different Content-Length headers" }
                contentLength = value
            case "transfer-encoding":
                transferEncoding = transferEncoding.map { "\($0), \(value)" } ?? value
            case "connection":
                connection += value.lowercased().split(separator: ",").map { String($0).trimmed(" \t") }
            default:
                break
            }
        }
        if (100...199).contains(code) {
            return code == 101 ? "an unexpected protocol switch" : nil
        }
        status = code
        keepAlive = parts[0] == "HTTP/1.1" ? !connection.contains("close") : connection.contains("keep-alive")
        if code == 204 || code == 304 {
            body = .framed(HTTPBodyIntake(framing: .none, limit: Self.bodyLimit))
        } else if let te = transferEncoding {
            // Chunked (and nothing else) has an end; any other coding runs to the close.
            body = te.lowercased().trimmed(" \t") == "chunked"
                ? .framed(HTTPBodyIntake(framing: .chunked, limit: Self.bodyLimit)) : .untilClose
        } else if let cl = contentLength {
            guard case .success(let framing) = HTTPFraming.of(contentLength: cl, transferEncoding: nil) else {
                return "Content-Length is not a number"
            }
            body = .framed(HTTPBodyIntake(framing: framing, limit: Self.bodyLimit))
        } else {
            body = .untilClose
        }
        return nil
    }
}

extension String {
    fileprivate func trimmed(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
