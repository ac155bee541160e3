import Foundation
import GatewayProtocol
import Logging
import Synchronization

/// An id a log line may carry as a field (PROTOCOL 4.7). Only ids: a card key, token or secret
/// has no case here, so it cannot become a field by accident.
public enum LogID: Sendable, Equatable {
    case client(String), user(String), order(String), payment(String), channel(String), product(String)

    public var field: (name: String, value: String) {
        switch self {
        case .client(let id): ("client", id)
        case .user(let id): ("user", id)
        case .order(let id): ("order", id)
        case .payment(let id): ("payment", id)
        case .channel(let id): ("channel", id)
        case .product(let id): ("product", id)
        }
    }
}

/// One JSON object per line: `ts` (UTC, ms), `level`, `node`, `msg`, then the metadata
/// (the ids) sorted by name, so log shippers and `jq` read it without a grammar.
public struct JSONLinesLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let node: String
    private let sink: LineSink

    public init(node: String, level: Logger.Level, sink: LineSink = .standardError) {
        self.node = node
        logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, JSON)] = [
            ("ts", .string(Self.timestamp(Date()))), ("level", .string(event.level.rawValue)),
            ("node", .string(node)), ("msg", .string(event.message.description)),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) where !["ts", "level", "node", "msg"].contains(key) {
            fields.append((key, Self.json(value)))
        }
        if let error = event.error { fields.append(("error", .string("\(error)"))) }
        sink.write(JSON.object(fields).serialized() + "\n")
    }

    static func json(_ value: Logger.MetadataValue) -> JSON {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let d): .object(d.sorted { $0.key < $1.key }.map { ($0.key, json($0.value)) })
        }
    }

    /// `2026-12-01T13:40:52.123Z`.
    static func timestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1_000).rounded(.down))
        var seconds = time_t(ms / 1_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let millis = ms % 1_000
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}

/// Where log lines go: each whole line in one `write`, so lines from several threads (the
/// loop, the dev bot) never interleave.
public struct LineSink: Sendable {
    private let emit: @Sendable (String) -> Void

    public init(_ emit: @escaping @Sendable (String) -> Void) { self.emit = emit }

    public func write(_ line: String) { emit(line) }

    public static let standardError = LineSink { line in
        stderrLock.withLock { _ in
            let bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                offset += n
            }
        }
    }
}

private let stderrLock = Mutex(())

/// Loggers of this process: every line a JSON object on stderr.
public enum GatewayLog {
    /// A node's own logger (several nodes may share a process in tests).
    public static func logger(node: String, level: Logger.Level) -> Logger {
        Logger(label: "gateway") { _ in JSONLinesLogHandler(node: node, level: level) }
    }

    /// Makes `Logger(label:)` everywhere in the process (the CLI, the dev bot, libraries) write
    /// JSON lines as `node`. Once per process, before the first logger is made.
    public static func bootstrap(node: String, level: Logger.Level) {
        LoggingSystem.bootstrap { _ in JSONLinesLogHandler(node: node, level: level) }
    }
}
